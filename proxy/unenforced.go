package proxy

import "net/http"

// serveUnenforced forwards a write whose method is not enforced as it is,
// unlocked and unchecked, but still invalidates the cache: an ETag that
// the cache holds must not outlive a change made through the gateway.
func (m *Middleware) serveUnenforced(w http.ResponseWriter, r *http.Request, next Handler, method string) error {
	rk := m.resourceKey(r)
	fw := &forwardWriter{ResponseWriter: w, m: m, r: r, method: method, rk: rk, next: next, unlocked: true}
	defer func() {
		if !fw.invalidated {
			m.invalidate(r.Context(), rk)
		}
	}()
	return next.ServeHTTP(fw, r)
}

// isSafe reports whether a method only reads (RFC 9110 §9.2.1).
func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
