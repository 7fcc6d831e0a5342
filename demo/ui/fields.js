// The edit form of an item: one field per member of a JSON object (or one
// field holding the whole document when it is not an object). Strings are
// edited as text; numbers, booleans, arrays and objects as JSON.
import {h} from './dom.js';

export const WHOLE = '';

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// members lists the names of a document's fields, in document order.
export function members(doc) {
  return isObject(doc) ? Object.keys(doc) : [WHOLE];
}

export function member(doc, name) {
  return name === WHOLE ? doc : doc?.[name];
}

// changedMembers lists the members whose value in draft differs from base.
export function changedMembers(base, draft) {
  const names = new Set([...members(base), ...members(draft)]);
  return [...names].filter((n) => !same(member(base, n), member(draft, n)));
}

// mergePatch is the RFC 7396 patch that makes base's members that draft
// changed take draft's values, leaving every other member as it is.
export function mergePatch(base, draft) {
  const patch = {};
  for (const n of changedMembers(base, draft)) {
    const v = member(draft, n);
    patch[n] = v === undefined ? null : v;
  }
  return patch;
}

export function show(v) {
  return v === undefined ? '(absent)' : typeof v === 'string' ? v : JSON.stringify(v);
}

// buildFields renders the inputs of doc; onInput runs on every keystroke.
export function buildFields(doc, onInput) {
  return members(doc).map((name) => {
    const v = member(doc, name);
    const kind = typeof v === 'string' ? 'text' : 'json';
    const id = 'f' + Math.random().toString(36).slice(2);
    const input = h('input', {
      id, class: 'field-input ' + kind, 'data-member': name, 'data-kind': kind,
      value: show(v), spellcheck: 'false', autocomplete: 'off',
      inputmode: typeof v === 'number' ? 'decimal' : null, oninput: onInput,
    });
    return h('div', {class: 'field'},
      h('label', {for: id}, name === WHOLE ? 'document' : name, kind === 'json' ? h('small', {}, ' JSON') : null),
      input,
      h('div', {class: 'field-error', 'aria-live': 'polite'}));
  });
}

// readFields reads the inputs back into a document, or returns null after
// marking the fields whose JSON does not parse.
export function readFields(container) {
  let doc = {};
  let ok = true;
  for (const input of container.querySelectorAll('.field-input')) {
    const err = input.parentElement.querySelector('.field-error');
    err.textContent = '';
    let v = input.value;
    if (input.dataset.kind === 'json') {
      try {
        v = JSON.parse(v);
      } catch {
        err.textContent = 'not valid JSON (a string needs "quotes")';
        ok = false;
        continue;
      }
    }
    if (input.dataset.member === WHOLE) doc = v;
    else doc[input.dataset.member] = v;
  }
  return ok ? doc : null;
}

export {same};
