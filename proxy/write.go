package proxy

import (
	"net/http"

	"go.uber.org/zap"
)

// serveWrite evaluates a write's preconditions against the current
// representation and forwards it, all under the resource's write lock.
// method is the one whose rules apply (see writeMethod).
func (m *Middleware) serveWrite(w http.ResponseWriter, r *http.Request, next Handler, method string) error {
	if err := checkSyntax(r); err != nil {
		m.badRequest(w, r, err)
		return nil
	}
	conditional := hasPreconditions(r.Header)
	if m.cfg.RequirePrecondition {
		if ok, ignored := protected(r.Header, nil); !ok {
			m.preconditionRequired(w, r, method, ignored, nil)
			return nil
		}
	}

	rk := m.resourceKey(r)
	unlock, err := m.locks.lock(r.Context(), rk.Lo)
	if err != nil {
		m.log.Debug("client left while waiting for the resource's write lock", requestFields(r, zap.Error(err))...)
		return nil
	}
	defer unlock()

	if conditional {
		cur, err := m.current(r, rk, next, m.cfg.Verify == VerifyCache)
		if err != nil {
			m.checkFailed(w, r, err)
			return nil
		}
		v, _ := evaluateHeader(r.Header, false, cur) // syntax was checked above
		if v.status != 0 {
			m.preconditionFailed(w, r, v.header, cur.etag)
			return nil
		}
		if m.cfg.RequirePrecondition {
			if ok, ignored := protected(r.Header, &cur); !ok {
				m.preconditionRequired(w, r, method, ignored, &cur)
				return nil
			}
		}
	}

	return m.forward(w, r, next, rk, method, conditional)
}
