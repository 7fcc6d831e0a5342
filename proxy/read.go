package proxy

import (
	"errors"
	"net/http"
	"strconv"
)

// serveRead answers a GET or HEAD: a 200 is buffered and hashed, and the
// preconditions are evaluated against the ETag that gives it.
func (m *Middleware) serveRead(w http.ResponseWriter, r *http.Request, next Handler) error {
	if err := checkSyntax(r); err != nil {
		return m.badRequest(w, r, err)
	}
	var rk resourceKey
	var gen uint64 // taken before the upstream read whose ETag may fill the cache
	useCache := m.cacheOn()
	if useCache {
		rk = m.resourceKey(r)
		gen, useCache = m.generation(r.Context(), rk)
		if useCache && m.cfg.Revalidate == RevalidateCache && m.notModifiedFromCache(w, r, rk, gen) {
			return nil
		}
	}
	up := r
	var hidden [len(conditionalFields)][]string
	if r.Method == http.MethodHead {
		// A HEAD goes upstream as a GET: the ETag needs the body a GET
		// would have, and the headers must be exactly a GET's.
		up = r.Clone(r.Context())
		up.Method = http.MethodGet
		for _, f := range conditionalFields {
			delete(up.Header, f)
		}
	} else {
		// Hide the fields from the rest of the route for the duration of
		// the call rather than cloning the request on this hot path.
		for i, f := range conditionalFields {
			if v := r.Header[f]; v != nil {
				hidden[i] = v
				delete(r.Header, f)
			}
		}
		defer restoreFields(r.Header, &hidden)
	}

	bw := m.newWriter(w, w.Header(), r.Method == http.MethodHead)
	defer m.releaseWriter(bw)
	err := callNext(bw, up, next)
	restoreFields(r.Header, &hidden) // idempotent; the defer covers panics
	if errors.Is(err, errAborted) {
		m.observe(Untagged)
		return m.readBroke(w, r, bw)
	}
	if !bw.buffered() {
		if err != nil && bw.stopped {
			err = nil // we stopped the body ourselves
		}
		m.observe(Untagged)
		if err == nil && !bw.wrote && bw.status != 0 {
			bw.sendHeader(bw.status) // a HEAD whose GET ended in a stop before any header went out
		}
		return err
	}
	if err != nil {
		return err
	}

	h := w.Header()
	etag := m.assignETag(h, bw, r)
	cur := current{exists: true, etag: etag, lastModified: lastModified(h)}
	if useCache {
		m.cache.fill(rk, variantOf(rk, m.vary, r.Header), gen, etag.Opaque, cur.lastModified, r.Header, h)
	}
	exposeETag(h)

	v, _ := evaluate(r, cur) // syntax was checked above
	switch v.status {
	case http.StatusNotModified:
		m.observe(NotModified)
		writeNotModified(w)
		return nil
	case http.StatusPreconditionFailed:
		return m.preconditionFailed(w, r, v.header, etag)
	}
	m.observe(Tagged)
	if n := bw.body.Len(); declaredLength(h) != n || len(h["Content-Length"]) != 1 {
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	}
	w.WriteHeader(bw.status)
	if r.Method != http.MethodHead {
		_, _ = bw.body.WriteTo(w)
	}
	return nil
}

func restoreFields(h http.Header, hidden *[len(conditionalFields)][]string) {
	for i, v := range hidden {
		if v != nil {
			h[conditionalFields[i]] = v
		}
	}
}

func writeNotModified(w http.ResponseWriter) {
	h := w.Header()
	for _, k := range notModifiedDrop {
		delete(h, k)
	}
	w.WriteHeader(http.StatusNotModified)
}
