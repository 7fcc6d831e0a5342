package proxy

import (
	"net/http"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

// Revalidate says where a read's If-None-Match is answered from.
type Revalidate uint8

const (
	// RevalidateUpstream reads the representation through the rest of the
	// route and compares its ETag.
	RevalidateUpstream Revalidate = iota
	// RevalidateCache answers 304 from a fresh cache entry without asking
	// the upstream; correct only when every write to the upstream passes
	// through this gateway.
	RevalidateCache
)

// notModifiedFromCache answers a GET or HEAD 304 when its preconditions
// say so against a fresh cache entry of its variant at generation gen, and
// reports whether
// it did. Anything else (a miss, a changed resource, a failed If-Match) is
// left to the upstream, which also refills the entry.
func (m *Middleware) notModifiedFromCache(w http.ResponseWriter, r *http.Request, rk resourceKey, gen uint64) bool {
	if len(r.Header["If-None-Match"]) == 0 {
		return false
	}
	e, ok := m.cache.get(variantOf(rk, m.vary, r.Header), gen, r.Header)
	if !ok {
		return false
	}
	cur := current{exists: true, etag: hashing.Tag{Opaque: e.etag}}
	if e.lastModified != 0 {
		cur.lastModified = time.Unix(e.lastModified, 0)
	}
	if v, _ := evaluate(r, cur); v.status != http.StatusNotModified {
		return false
	}
	// The fields the cached 200 had. Date is not among them: net/http
	// stamps the 304 with the gateway's own clock, the date at which the
	// gateway vouches the representation is still the one named.
	h := w.Header()
	h["Etag"] = []string{e.etag}
	setIf(h, "Cache-Control", e.cacheControl)
	setIf(h, "Content-Location", e.contentLocation)
	setIf(h, "Expires", e.expires)
	setIf(h, "Vary", e.vary)
	exposeETag(h)
	m.observe(Revalidated)
	writeNotModified(w)
	return true
}

func setIf(h http.Header, name, value string) {
	if value != "" {
		h[name] = []string{value}
	}
}
