package proxy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

// checkError is a failed lookup of the current representation.
type checkError struct {
	status int // 502 or 504, or the upstream's 4xx to relay
	header http.Header
	err    error
}

func (e *checkError) Error() string { return e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// current finds the target's current representation: from a fresh cache
// entry when allowed, else by a GET of the same URI through the rest of the
// route, carrying the client's headers so that the ETag it computes is the
// one that client saw.
func (m *Middleware) current(r *http.Request, rk resourceKey, next Handler, fromCache bool) (current, error) {
	// The variant key matters only where the cache is read or filled.
	var vk variantKey
	if m.cacheOn() {
		vk = variantOf(rk, m.vary, r.Header)
	}
	if fromCache {
		if cur, ok := m.cached(r, rk, vk); ok {
			return cur, nil
		}
	}
	var gen uint64
	fill := m.cacheOn()
	if fill {
		gen, fill = m.generation(r.Context(), rk)
	}
	ctx := r.Context()
	if m.cfg.Detach != nil {
		ctx = m.cfg.Detach(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.CheckTimeout)
	defer cancel()
	bw := m.newWriter(nil, make(http.Header), false)
	defer m.releaseWriter(bw)
	err := callNext(bw, internalGet(ctx, r), next)
	if ctx.Err() == context.DeadlineExceeded && r.Context().Err() == nil {
		return current{}, &checkError{status: http.StatusGatewayTimeout, err: fmt.Errorf("GET %s: no complete answer within check_timeout (%s)", r.RequestURI, m.cfg.CheckTimeout)}
	}
	if err != nil && !bw.stopped {
		return current{}, &checkError{status: m.gatewayStatus(err), err: fmt.Errorf("GET %s: %w", r.RequestURI, err)}
	}
	switch s := bw.status; {
	case s >= 200 && s < 300:
		cur := current{exists: true, lastModified: lastModified(bw.header)}
		if bw.buffered() {
			cur.digest, cur.semantic = m.bodyHash(bw, r)
			cur.etag = m.assignETag(bw.header, bw, r)
			if fill && s == http.StatusOK { // what a client's GET would be tagged with
				m.cache.fill(rk, vk, gen, cur.etag.Opaque, cur.lastModified, r.Header, bw.header)
			}
		}
		return cur, nil
	case s == http.StatusNotFound || s == http.StatusGone:
		return current{}, nil
	case s >= 500:
		status := http.StatusBadGateway
		if s == http.StatusGatewayTimeout {
			status = http.StatusGatewayTimeout
		}
		return current{}, &checkError{status: status, err: fmt.Errorf("GET %s: upstream answered %d", r.RequestURI, s)}
	case s >= 400:
		return current{}, &checkError{status: s, header: bw.header, err: fmt.Errorf("GET %s: upstream answered %d", r.RequestURI, s)}
	default:
		return current{}, &checkError{status: http.StatusBadGateway, err: fmt.Errorf("GET %s: upstream answered %d, which names no current representation", r.RequestURI, s)}
	}
}

// cached returns the current representation a fresh cache entry of the
// variant vk knows.
func (m *Middleware) cached(r *http.Request, rk resourceKey, vk variantKey) (current, bool) {
	gen, ok := m.generation(r.Context(), rk)
	if !ok {
		return current{}, false
	}
	e, ok := m.cache.get(vk, gen, r.Header)
	if !ok {
		return current{}, false
	}
	cur := current{exists: true, etag: hashing.Tag{Opaque: e.etag}}
	if e.lastModified != 0 {
		cur.lastModified = time.Unix(e.lastModified, 0)
	}
	return cur, true
}

// internalGet derives from a write the GET that reads its target: same URI
// and headers, minus the body and anything conditional, under ctx.
func internalGet(ctx context.Context, r *http.Request) *http.Request {
	g := r.Clone(ctx)
	g.Method = http.MethodGet
	g.Body = http.NoBody
	g.GetBody = nil
	g.ContentLength = 0
	g.TransferEncoding = nil
	for _, f := range conditionalFields {
		delete(g.Header, f)
	}
	for _, f := range internalGetDrop {
		delete(g.Header, f)
	}
	return g
}
