// An item's card: its form remembers the ETag it was filled from and sends
// it as If-Match, so a save based on an old version is refused by the
// gateway (412) and shown as a conflict rather than overwriting.
import {h} from './dom.js';
import {send} from './api.js';
import {buildFields, readFields, mergePatch} from './fields.js';
import {conflictView, explain428} from './conflict.js';

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

export class ItemCard {
  // sendIfMatch says whether a plain save carries If-Match (the page's
  // toggle, to show what the gateway does with a blind write).
  constructor(path, sendIfMatch) {
    this.path = path;
    this.sendIfMatch = sendIfMatch;
    this.base = undefined; // the version the form was filled from
    this.etag = null; // its ETag
    this.busy = false;

    this.etagEl = h('code', {class: 'etag', title: 'the ETag this form was filled from'}, '…');
    this.fieldsEl = h('div', {class: 'fields'});
    this.dirtyEl = h('span', {class: 'dirty', hidden: true}, 'unsaved changes');
    this.staleEl = h('p', {class: 'stale', hidden: true});
    this.form = h('form', {class: 'edit', onsubmit: (e) => { e.preventDefault(); this.save(); }},
      this.fieldsEl,
      this.staleEl,
      h('div', {class: 'actions'},
        h('button', {type: 'submit', class: 'save primary'}, 'Save'),
        h('button', {type: 'button', class: 'refresh', onclick: () => this.refresh(),
          title: 'GET with If-None-Match: the gateway answers 304 if nothing changed'}, 'Refresh'),
        this.dirtyEl));
    this.panel = h('div', {class: 'panel'});
    this.flashEl = h('p', {class: 'flash', 'aria-live': 'polite'});
    this.el = h('article', {class: 'item', 'data-path': path},
      h('header', {}, h('h3', {}, h('a', {href: path, target: '_blank'}, path)), this.etagEl),
      this.form, this.panel, this.flashEl);
  }

  flash(text, kind = 'info') {
    this.flashEl.textContent = text;
    this.flashEl.className = 'flash ' + kind;
  }

  dirty() {
    return [...this.form.querySelectorAll('.field-input')].some((i) => i.value !== i.dataset.original);
  }

  // fill shows a version of the item and makes it the base of the form.
  fill(doc, etag) {
    this.base = doc;
    this.etag = etag;
    this.etagEl.textContent = etag ?? 'no ETag';
    this.fieldsEl.replaceChildren(...buildFields(doc, () => { this.dirtyEl.hidden = !this.dirty(); }));
    for (const i of this.form.querySelectorAll('.field-input')) i.dataset.original = i.value;
    this.dirtyEl.hidden = true;
    this.staleEl.hidden = true;
    this.showPanel(null);
  }

  showPanel(el) {
    this.panel.replaceChildren(...(el ? [el] : []));
    this.form.hidden = el !== null && el.classList.contains('conflict');
    this.el.classList.toggle('in-conflict', this.form.hidden);
  }

  gone() {
    this.el.classList.add('removed');
    this.flash('This item no longer exists.', 'error');
  }

  async run(fn) {
    if (this.busy) return;
    this.busy = true;
    this.el.classList.add('busy');
    try {
      await fn();
    } catch (err) {
      this.flash('The request failed: ' + err.message, 'error');
    } finally {
      this.busy = false;
      this.el.classList.remove('busy');
    }
  }

  async load() {
    const r = await send('GET', this.path);
    if (r.status === 200) this.fill(r.json(), r.etag);
    else if (r.status === 404) this.gone();
    else this.flash(`GET answered ${r.status}`, 'error');
  }

  // refresh asks whether the version the form holds is still current. A
  // newer one replaces it only when the user has not started editing.
  // Quietly, it says nothing when nothing changed.
  refresh(quiet = false) {
    return this.run(async () => {
      if (!quiet) this.flash('');
      const r = await send('GET', this.path, {headers: this.etag ? {'If-None-Match': this.etag} : {}});
      if (r.status === 304) {
        if (!quiet) this.flash('Up to date: the gateway answered 304 Not Modified.');
      } else if (r.status === 200 && this.dirty()) {
        this.staleEl.textContent = `Changed elsewhere since you read it (now ${r.etag}). Your edits are kept; saving will show both versions.`;
        this.staleEl.hidden = false;
      } else if (r.status === 200) {
        this.fill(r.json(), r.etag);
        this.flash('Reloaded: it had changed.');
      } else if (r.status === 404) {
        this.gone();
      }
    });
  }

  // changedElsewhere is called by the change feed with the new ETag, if known.
  changedElsewhere(etag) {
    if (etag && etag === this.etag) return; // this card's own write
    this.refresh(true);
  }

  save() {
    return this.run(async () => {
      this.flash('');
      const draft = readFields(this.form);
      if (draft === null) return;
      const headers = {'Content-Type': 'application/json'};
      if (this.sendIfMatch() && this.etag) headers['If-Match'] = this.etag;
      const r = await send('PUT', this.path, {headers, body: JSON.stringify(draft)});
      await this.settle(r, draft, this.etag, 'Saved.');
    });
  }

  // settle acts on the answer to a write.
  async settle(r, draft, sentETag, done) {
    if (r.status >= 200 && r.status < 300) {
      if (r.etag && r.json() !== null) this.fill(r.json(), r.etag);
      else await this.load();
      this.flash(done, 'ok');
    } else if (r.status === 412) {
      await this.conflict(draft, sentETag);
    } else if (r.status === 428) {
      this.showPanel(explain428(r.json()?.detail, () => this.showPanel(null)));
    } else {
      const p = r.json();
      this.flash(`${r.status}: ${p?.detail ?? p?.error ?? r.text}`, 'error');
    }
  }

  // conflict reads the current version and shows it beside the draft.
  async conflict(draft, refused) {
    const r = await send('GET', this.path, {note: 'The current version, to show beside yours.'});
    const c = {base: this.base, draft, refused, current: r.status === 200 ? r.json() : null, currentETag: r.etag};
    this.flash('');
    this.showPanel(conflictView(c, {
      onReload: () => this.run(() => this.load()),
      onApply: () => this.run(() => this.applyOnTop(c)),
    }));
  }

  // applyOnTop writes only the members the user changed onto the current
  // version, conditional on that version still being current.
  async applyOnTop(c) {
    let r;
    if (isObject(c.base) && isObject(c.draft)) {
      r = await send('PATCH', this.path, {
        headers: {'Content-Type': 'application/merge-patch+json', 'If-Match': c.currentETag},
        body: JSON.stringify(mergePatch(c.base, c.draft)),
      });
    } else {
      r = await send('PUT', this.path, {
        headers: {'Content-Type': 'application/json', 'If-Match': c.currentETag},
        body: JSON.stringify(c.draft),
      });
    }
    await this.settle(r, c.draft, c.currentETag, 'Your change was applied on top of the current version.');
  }
}
