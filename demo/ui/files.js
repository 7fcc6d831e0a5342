// The panel of change notifications for demo/files: an EventSource on the
// gateway's fs_notify stream, and a listing of the directory that is read
// again whenever the stream says notifications were missed.
import {h, clock} from './dom.js';
import {send, record} from './api.js';

const STREAM = '/v1/files/%2F/notify?recursive=true';
const LISTING = '/files/';
const MAX_EVENTS = 100;

// Why notifications can be missed, by the reason an overflow event gives.
const reasons = {
  history: 'the stream resumed after a gap the gateway has no record of (it restarted, or this page was away too long)',
  kernel_queue: 'the kernel’s inotify queue overflowed',
  subscriber_queue: 'this page fell too far behind the stream',
  watch_limit: 'a new directory could not be watched (inotify watch limit)',
  reopened: 'the stream had to be opened anew',
};

function kind(type) {
  if (type.endsWith('_added')) return 'added';
  if (type.endsWith('_removed')) return 'removed';
  if (type.includes('_moved_')) return 'moved';
  if (type.endsWith('data_written') || type.endsWith('size_changed')) return 'written';
  return 'attrs';
}

export function watchFiles(panel) {
  const status = panel.querySelector('.stream-status');
  const notice = panel.querySelector('.notice');
  const listing = panel.querySelector('.listing');
  const events = panel.querySelector('.events');
  let reopen = false;

  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };

  async function rescan() {
    const r = await send('GET', LISTING, {headers: {Accept: 'application/json'}, note: 'Caddy’s file_server listing of demo/files.'});
    const entries = r.status === 200 ? r.json() ?? [] : [];
    listing.replaceChildren(...entries.map((e) =>
      h('li', {class: e.is_dir ? 'dir' : 'file'}, e.name + (e.is_dir ? '/' : ''))));
    if (entries.length === 0) listing.append(h('li', {class: 'empty'}, 'empty: add a file to demo/files'));
    return entries.length;
  }

  async function missed(reason) {
    const why = h('p', {class: 'why'}, `${clock()} · ${reasons[reason] ?? reason}.`);
    notice.replaceChildren(
      h('strong', {}, 'changes were missed — rescanning'), why,
      h('button', {type: 'button', class: 'dismiss', 'aria-label': 'dismiss', onclick: () => { notice.hidden = true; }}, '×'));
    notice.hidden = false;
    const n = await rescan().catch(() => null);
    why.append(n === null ? ' The listing could not be read.' : ` Listed ${n} entr${n === 1 ? 'y' : 'ies'} again.`);
  }

  function connect() {
    const es = new EventSource(STREAM);
    es.onopen = () => {
      setStatus('open', 'live');
      record({method: 'GET', path: STREAM, status: 200, stream: true, note: 'EventSource: the notification stream is open.'});
      if (reopen) {
        reopen = false;
        missed('reopened');
      }
    };
    es.onmessage = (e) => {
      for (const n of JSON.parse(e.data)) {
        events.prepend(h('li', {class: 'ev ' + kind(n.type)},
          h('span', {class: 'time'}, clock()),
          h('span', {class: 'type'}, n.type),
          h('span', {class: 'path'}, n.path || '.')));
      }
      while (events.children.length > MAX_EVENTS) events.lastChild.remove();
    };
    es.addEventListener('overflow', (e) => {
      let reason = 'unknown';
      try { reason = JSON.parse(e.data).reason; } catch {}
      missed(reason);
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CONNECTING) {
        setStatus('reconnecting', 'reconnecting…');
        return;
      }
      // The gateway answered with an error (a 503, say): EventSource gives
      // up, so open a new stream, which starts without Last-Event-ID.
      es.close();
      setStatus('closed', 'closed; retrying in 5 s');
      reopen = true;
      setTimeout(connect, 5000);
    };
  }

  rescan().catch(() => {});
  connect();
}
