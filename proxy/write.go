package proxy

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
)

// serveWrite evaluates a write's preconditions against the current
// representation and forwards it, all under the resource's write lock.
func (m *Middleware) serveWrite(w http.ResponseWriter, r *http.Request, next Handler) error {
	if err := checkSyntax(r); err != nil {
		m.badRequest(w, r, err)
		return nil
	}
	conditional := hasPreconditions(r.Header)
	if !conditional && m.cfg.RequirePrecondition {
		m.preconditionRequired(w, r)
		return nil
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
		v, _ := evaluate(r, cur) // syntax was checked above
		if v.status != 0 {
			m.preconditionFailed(w, r, v.header, cur.etag)
			return nil
		}
	}

	fwd := r
	if conditional {
		fwd = r.Clone(r.Context())
		for _, f := range writeConditionals {
			delete(fwd.Header, f)
		}
	}
	m.observe(Forwarded)
	fw := &forwardWriter{ResponseWriter: w, m: m, r: r, rk: rk, next: next}
	if r.Method == http.MethodPut && m.cfg.ETagAfterWrite {
		// Hash the content as it streams upstream: RFC 9110 §9.3.4 allows
		// an ETag on the response only if the new representation is that
		// content untransformed.
		fw.sent = &hashingBody{ReadCloser: http.NoBody, length: r.ContentLength, h: m.hashers.Get().(hashing.Hasher)}
		fw.sent.h.Reset()
		defer fw.sent.release(&m.hashers)
		if r.Body == nil || r.Body == http.NoBody {
			fw.sent.eof = true
		} else {
			fw.sent.ReadCloser = r.Body
			fwd = fwd.WithContext(fwd.Context()) // a shallow copy whose Body can change
			fwd.Body = fw.sent
		}
	}
	// Whatever happens upstream, cached ETags of this resource are suspect
	// from now on. A 2xx invalidates them as soon as the upstream answers,
	// and the read after the write may then refill the cache with the new
	// ETag; any other ending invalidates here, before the lock is released.
	defer func() {
		if !fw.invalidated {
			m.cache.invalidate(rk)
		}
	}()
	return next.ServeHTTP(fw, fwd)
}
