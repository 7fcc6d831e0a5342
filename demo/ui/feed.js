// The gateway's change feed (etag { changes /changes }): when it exists,
// each item written through the gateway, from any tab or client, is
// refreshed as soon as the write is done. Without it the page still works:
// Refresh and the conflict view cover what another tab changed.
import {send, record} from './api.js';

const FEED = '/changes?prefix=/items/';

// followChanges calls onChange(notification) for each change, and
// onMissed() when changes were missed. status shows whether it is on.
export async function followChanges(status, onChange, onMissed) {
  const set = (state, text, title) => {
    status.dataset.state = state;
    status.textContent = text;
    status.title = title;
  };
  // One GET, its body left unread, tells whether the feed is there; an
  // EventSource alone would not say why it failed.
  let r;
  try {
    r = await send('GET', FEED, {headersOnly: true, note: 'Is there a change feed? Only its status is read.'});
  } catch {
    set('off', 'change feed: unreachable', 'the gateway did not answer');
    return;
  }
  if (r.status !== 200 || !(r.headers.get('Content-Type') ?? '').startsWith('text/event-stream')) {
    set('off', 'change feed: off',
      `GET ${FEED} answered ${r.status}: this gateway has no change feed (etag { changes /changes } turns it on). Use Refresh to see what others changed.`);
    return;
  }
  const es = new EventSource(FEED);
  es.onopen = () => {
    set('open', 'change feed: live', 'items written through the gateway are refreshed as soon as the write is done');
    record({method: 'GET', path: FEED, status: 200, stream: true, note: 'EventSource: the change feed is open.'});
  };
  es.onmessage = (e) => {
    for (const n of JSON.parse(e.data)) onChange(n);
  };
  es.addEventListener('overflow', () => onMissed());
  es.onerror = () => {
    if (es.readyState === EventSource.CONNECTING) set('reconnecting', 'change feed: reconnecting…', '');
    else set('off', 'change feed: closed', 'the feed answered with an error; reload the page to try again');
  };
}
