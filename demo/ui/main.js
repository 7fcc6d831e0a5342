// The demo page: the items of the legacy API, each editable with
// If-Match; the request log; the demo/files notification panel; and the
// change feed when the gateway has one.
import {h} from './dom.js';
import {attachLog, send} from './api.js';
import {ItemCard} from './items.js';
import {watchFiles} from './files.js';
import {followChanges} from './feed.js';

const list = document.getElementById('item-list');
const toggle = document.getElementById('send-if-match');
const cards = new Map(); // path → ItemCard

attachLog(document.getElementById('request-log'));

function add(path) {
  const card = new ItemCard(path, () => toggle.checked);
  cards.set(path, card);
  list.append(card.el);
  return card;
}

// syncItems lists the items, then reads each one on its own for its ETag
// (the list's ETag covers the whole collection). A card already shown is
// refreshed, which keeps what its user is editing.
async function syncItems() {
  const r = await send('GET', '/items', {note: 'The list of items; each is then read on its own, for its ETag.'});
  if (r.status !== 200) {
    list.replaceChildren(h('p', {class: 'flash error'}, `GET /items answered ${r.status}: is the demo API running?`));
    return;
  }
  const paths = (r.json()?.items ?? []).map((e) => e.href);
  for (const [path, card] of cards) if (!paths.includes(path)) card.gone();
  await Promise.all(paths.map((path) => {
    const card = cards.get(path);
    if (card) return card.refresh();
    const fresh = add(path);
    return fresh.run(() => fresh.load());
  }));
}

function onChange(n) {
  if (!n.path?.startsWith('/items/')) return;
  const card = cards.get(n.path);
  if (n.type === 'resource_removed') card?.gone();
  else if (card) card.changedElsewhere(n.etag);
  else {
    const fresh = add(n.path);
    fresh.run(() => fresh.load());
  }
}

document.getElementById('refresh-all').addEventListener('click', () => syncItems());

syncItems().catch((err) => list.replaceChildren(h('p', {class: 'flash error'}, 'Could not reach the gateway: ' + err.message)));
watchFiles(document.getElementById('files'));
followChanges(document.getElementById('feed-status'), onChange, () => syncItems());
