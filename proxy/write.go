package proxy

import (
	"net/http"
)

// serveWrite evaluates a write's preconditions against the current
// representation and forwards it, under the resource's write lock. The body
// is received first, so that the lock is held only for the check and the
// upstream's work, not for as long as a client takes to send. method is the
// one whose rules apply (see writeMethod).
func (m *Middleware) serveWrite(w http.ResponseWriter, r *http.Request, next Handler, method string) error {
	if expectsContinue(r) && r.ProtoMajor == 1 {
		// Refused before its body is read, such a write must end its
		// connection: Caddy hides net/http's 100-continue reader behind
		// its own, so the server would otherwise wait for the body that
		// the client, told no, never sends. Once the body is in, the
		// connection may be kept.
		w.Header()["Connection"] = []string{"close"}
	}
	if err := checkSyntax(r); err != nil {
		m.badRequest(w, r, err)
		return nil
	}
	conditional := hasPreconditions(r.Header)
	if m.required[method] {
		if ok, ignored := protected(r.Header, nil); !ok {
			m.preconditionRequired(w, r, method, ignored, nil)
			return nil
		}
	}

	rk := m.resourceKey(r)
	if conditional && m.refusedEarly(w, r, rk, next, method) {
		return nil
	}
	body, ok := m.receive(w, r)
	if !ok {
		return nil
	}
	defer body.release()
	if body != nil && body.rest == nil {
		delete(w.Header(), "Connection")
	}
	lease, ok := m.lockWrite(w, r, rk)
	if !ok {
		return nil
	}
	defer m.unlock(r, lease)
	// Under the lease, r's context also ends when the lease is lost; the
	// client's own context is the one that says whether it left.
	lr, done := underLease(r, lease)
	defer done()

	if conditional {
		cur, err := m.current(lr, rk, next, m.cfg.Verify == VerifyCache)
		if err != nil {
			if m.leaseLost(w, lr, "checking the preconditions") {
				return nil
			}
			if !m.clientGone(r, "checking the preconditions") {
				m.checkFailed(w, r, err)
			}
			return nil
		}
		if deletesNothing(method, r.Header, cur) {
			m.notFound(w, r)
			return nil
		}
		v, _ := evaluateHeader(r.Header, false, cur) // syntax was checked above
		if v.status != 0 {
			m.preconditionFailed(w, r, v.header, cur.etag)
			return nil
		}
		if m.required[method] {
			if ok, ignored := protected(r.Header, &cur); !ok {
				m.preconditionRequired(w, r, method, ignored, &cur)
				return nil
			}
		}
	}
	if m.leaseLost(w, lr, "before forwarding") || m.clientGone(r, "before forwarding") {
		return nil
	}
	return m.forward(w, lr, next, rk, method, conditional, body)
}

// refusedEarly refuses, before the body is read, a write whose precondition
// the gateway can already tell is false: from a fresh cache entry with
// verify cache, or, when the client waits for 100 Continue before it
// uploads, from a check made without the lock. What it lets through is
// checked again under the lock.
func (m *Middleware) refusedEarly(w http.ResponseWriter, r *http.Request, rk resourceKey, next Handler, method string) bool {
	var cur current
	switch {
	case expectsContinue(r) && r.ContentLength <= m.cfg.MaxBody:
		var err error
		if cur, err = m.current(r, rk, next, m.cfg.Verify == VerifyCache); err != nil {
			if !m.clientGone(r, "checking the preconditions") {
				m.checkFailed(w, r, err)
			}
			return true
		}
	case m.cfg.Verify == VerifyCache:
		var ok bool
		if cur, ok = m.cached(r, rk, variantOf(rk, m.vary, r.Header)); !ok {
			return false
		}
	default:
		return false
	}
	v, _ := evaluateHeader(r.Header, false, cur) // syntax was checked before
	if v.status == 0 || deletesNothing(method, r.Header, cur) {
		return false // a DELETE of nothing is answered under the lock
	}
	m.preconditionFailed(w, r, v.header, cur.etag)
	return true
}
