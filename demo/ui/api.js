// Every request the page makes goes through send, which shows it in the
// request log: method, path, the precondition sent, the status and the
// ETag received, and a line on what the answer means.
import {h, clock} from './dom.js';

const MAX_ENTRIES = 60;
const preconditions = ['If-Match', 'If-None-Match'];

// meaning explains a response in terms of the protocol.
function meaning(method, status, etag) {
  switch (status) {
    case 304: return 'Not Modified: the copy the page holds is current; no body was sent.';
    case 412: return 'Precondition Failed: the item changed since it was read. The gateway refused the write; the API never saw it.';
    case 428: return 'Precondition Required: the gateway refuses a write that does not say which version it replaces.';
  }
  if (status >= 200 && status < 300) {
    if (method === 'GET' && etag) return 'The gateway hashed the body into a strong ETag.';
    if (method === 'PUT' && !etag) return 'No ETag: the API stores the JSON re-formatted, so what it serves is not what was sent (RFC 9110 §9.3.4). The page GETs the new ETag.';
    if (etag) return 'The write went through; the gateway returned the new ETag with it.';
  }
  return '';
}

function entry({method, path, sent, status, etag, stream, note}) {
  const cls = status === 0 ? 'fail' : status === 304 ? 's304' : status < 300 ? 's2xx' : status === 412 ? 's412' : status === 428 ? 's428' : 'fail';
  return h('li', {class: 'req ' + cls},
    h('div', {class: 'req-line'},
      h('span', {class: 'time'}, clock()),
      h('span', {class: 'method'}, method),
      h('span', {class: 'path'}, path),
      h('span', {class: 'status'}, status === 0 ? 'failed' : String(status))),
    h('div', {class: 'req-headers'},
      sent.map(([k, v]) => h('span', {class: 'hdr sent'}, `${k}: ${v}`)),
      h('span', {class: 'hdr got'}, stream ? 'text/event-stream' : etag ? `ETag: ${etag}` : 'no ETag')),
    note ? h('div', {class: 'req-note'}, note) : null);
}

let logList = null;

// attachLog names the list the log is written to.
export function attachLog(ol) {
  logList = ol;
}

// record adds an entry to the request log, newest first.
export function record(e) {
  if (!logList) return;
  logList.prepend(entry({sent: [], ...e}));
  while (logList.children.length > MAX_ENTRIES) logList.lastChild.remove();
}

// send makes a request with the browser's HTTP cache out of the way, so
// that every 304 or 412 the log shows is the gateway's own answer. With
// headersOnly, the body is not read (for a stream, which would not end).
export async function send(method, path, {headers = {}, body, note, headersOnly = false} = {}) {
  const sent = preconditions.filter((k) => headers[k]).map((k) => [k, headers[k]]);
  const ctl = new AbortController();
  let res;
  try {
    res = await fetch(path, {method, headers, body, cache: 'no-store', signal: ctl.signal});
  } catch (err) {
    record({method, path, sent, status: 0, etag: null, note: 'The request failed: ' + err.message});
    throw err;
  }
  const etag = res.headers.get('ETag');
  let text = '';
  if (headersOnly) ctl.abort();
  else text = await res.text();
  record({method, path, sent, status: res.status, etag, note: note ?? meaning(method, res.status, etag)});
  return {status: res.status, etag, text, headers: res.headers, json: () => parse(text)};
}

// parse reads JSON, giving null for what is not JSON.
export function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
