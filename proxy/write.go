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
		return m.badRequest(w, r, err)
	}
	conditional := hasPreconditions(r.Header)
	if m.required[method] {
		if ok, ignored := protected(r.Header, nil); !ok {
			return m.preconditionRequired(w, r, method, ignored, nil)
		}
	}

	rk := m.resourceKey(r)
	if conditional {
		if refused, err := m.refusedEarly(w, r, rk, next, method); refused {
			return err
		}
	}
	body, ok, err := m.receive(w, r)
	if !ok {
		return err
	}
	defer body.release()
	if body != nil && body.rest == nil {
		delete(w.Header(), "Connection")
	}
	lease, ok, err := m.lockWrite(w, r, rk)
	if !ok {
		return err
	}
	defer m.unlock(r, lease)
	// Under the lease, r's context also ends when the lease is lost; the
	// client's own context is the one that says whether it left.
	lr, done := underLease(r, lease)
	defer done()

	if conditional {
		cur, err := m.current(lr, rk, next, m.cfg.Verify == VerifyCache)
		if err != nil {
			if lost, err := m.leaseLost(w, lr, "checking the preconditions"); lost {
				return err
			}
			if m.clientGone(r, "checking the preconditions") {
				return nil
			}
			return m.checkFailed(w, r, err)
		}
		if deletesNothing(method, r.Header, cur) {
			return m.notFound(w, r)
		}
		v, _ := evaluateHeader(r.Header, false, cur) // syntax was checked above
		if v.status != 0 {
			return m.preconditionFailed(w, r, v.header, cur.etag)
		}
		if m.required[method] {
			if ok, ignored := protected(r.Header, &cur); !ok {
				return m.preconditionRequired(w, r, method, ignored, &cur)
			}
		}
	}
	if lost, err := m.leaseLost(w, lr, "before forwarding"); lost {
		return err
	}
	if m.clientGone(r, "before forwarding") {
		return nil
	}
	return m.forward(w, lr, next, rk, method, conditional, body)
}

// refusedEarly refuses, before the body is read, a write whose precondition
// the gateway can already tell is false: from a fresh cache entry with
// verify cache, or, when the client waits for 100 Continue before it
// uploads, from a check made without the lock. What it lets through is
// checked again under the lock. err is what a refusal returns (see refuse).
func (m *Middleware) refusedEarly(w http.ResponseWriter, r *http.Request, rk resourceKey, next Handler, method string) (refused bool, err error) {
	var cur current
	switch {
	case expectsContinue(r) && r.ContentLength <= m.cfg.MaxBody:
		if cur, err = m.current(r, rk, next, m.cfg.Verify == VerifyCache); err != nil {
			if m.clientGone(r, "checking the preconditions") {
				return true, nil
			}
			return true, m.checkFailed(w, r, err)
		}
	case m.cfg.Verify == VerifyCache:
		var ok bool
		if cur, ok = m.cached(r, rk, variantOf(rk, m.vary, r.Header)); !ok {
			return false, nil
		}
	default:
		return false, nil
	}
	v, _ := evaluateHeader(r.Header, false, cur) // syntax was checked before
	if v.status == 0 || deletesNothing(method, r.Header, cur) {
		return false, nil // a DELETE of nothing is answered under the lock
	}
	return true, m.preconditionFailed(w, r, v.header, cur.etag)
}
