// h builds an element: h('p', {class: 'x'}, 'text', child). Text is always
// set as text, never parsed as HTML, so values from the API cannot inject
// markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

// clock formats a time as HH:MM:SS for the logs.
export function clock(t = new Date()) {
  return t.toLocaleTimeString([], {hour12: false});
}
