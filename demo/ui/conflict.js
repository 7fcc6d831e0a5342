// The view shown when a save is refused with 412: the item as it now is
// beside the user's version, member by member, with who changed what since
// the user read it. Nothing is written until the user chooses.
import {h} from './dom.js';
import {changedMembers, member, members, show} from './fields.js';

// conflictView renders the comparison. c holds base (what the user read),
// draft (the user's version), current and its ETag, and the refused ETag.
export function conflictView(c, {onReload, onApply}) {
  const mine = new Set(changedMembers(c.base, c.draft));
  const theirs = new Set(c.current === null ? [] : changedMembers(c.base, c.current));
  const names = [...new Set([...members(c.current), ...members(c.draft)])];

  const rows = names.map((n) => {
    const who = mine.has(n) && theirs.has(n) ? 'both' : mine.has(n) ? 'mine' : theirs.has(n) ? 'theirs' : '';
    const label = {both: 'both changed', mine: 'your change', theirs: 'their change', '': ''}[who];
    return h('tr', {class: who},
      h('th', {scope: 'row'}, n || 'document', label ? h('span', {class: 'who'}, label) : null),
      h('td', {class: 'current-value'}, show(member(c.current, n))),
      h('td', {class: 'your-value'}, show(member(c.draft, n))));
  });

  const gone = c.current === null;
  return h('div', {class: 'conflict', role: 'alert'},
    h('h4', {}, gone ? 'Someone else deleted this item' : 'Someone else changed this item'),
    h('p', {},
      'The gateway refused your save with ', h('b', {}, '412 Precondition Failed'), ': you sent ',
      h('code', {}, 'If-Match: ' + c.refused), gone ? ', and the item no longer exists.' : [', but the item is now ', h('code', {}, c.currentETag), '.'],
      ' Nothing was overwritten.'),
    h('table', {class: 'diff'},
      h('thead', {}, h('tr', {}, h('th', {}), h('th', {}, 'Current'), h('th', {}, 'Yours'))),
      h('tbody', {}, rows)),
    h('div', {class: 'actions'},
      h('button', {type: 'button', class: 'reload', onclick: onReload}, 'Reload'),
      h('button', {type: 'button', class: 'apply primary', onclick: onApply, disabled: gone || mine.size === 0},
        'Apply my change on top')),
    h('p', {class: 'hint'}, gone
      ? 'Reload to see the items as they are now.'
      : mine.size === 0
        ? 'You changed nothing since you read it: reload to see their version.'
        : `“Apply my change on top” writes only what you changed (${[...mine].map((n) => n || 'document').join(', ')}) onto the current version, with If-Match: ${c.currentETag}.`));
}

// explain428 tells why a write without a precondition was refused.
export function explain428(detail, onDismiss) {
  return h('div', {class: 'explain', role: 'alert'},
    h('h4', {}, '428 Precondition Required'),
    h('p', {},
      'This save went out without ', h('code', {}, 'If-Match'), '. The gateway runs with ',
      h('code', {}, 'etag { require_precondition }'),
      ': it refuses any write that does not name the version it replaces, because such a blind write would silently replace whatever someone else saved in the meantime. Nothing was written.'),
    detail ? h('p', {class: 'detail'}, 'The gateway said: “', detail, '”') : null,
    h('p', {}, 'Tick “send If-Match on save” at the top and save again.'),
    h('div', {class: 'actions'}, h('button', {type: 'button', onclick: onDismiss}, 'Dismiss')));
}
