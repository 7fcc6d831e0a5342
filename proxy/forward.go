package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
)

// forward sends a write whose preconditions held (or that had none)
// through the rest of the route, without the conditional fields, which
// name this gateway's ETags, not the upstream's.
func (m *Middleware) forward(w http.ResponseWriter, r *http.Request, next Handler, rk resourceKey, method string, conditional bool, body *receivedBody) error {
	fwd := r
	if conditional {
		fwd = r.Clone(r.Context())
		for _, f := range writeConditionals {
			delete(fwd.Header, f)
		}
	}
	if body != nil {
		if fwd == r {
			fwd = fwd.WithContext(fwd.Context()) // a shallow copy whose Body can change
		}
		body.forward(fwd)
	}
	m.observe(Forwarded)
	fw := &forwardWriter{ResponseWriter: w, m: m, r: r, method: method, rk: rk, next: next}
	if method == http.MethodPut && m.cfg.ETagAfterWrite {
		// Hash the content as it streams upstream: RFC 9110 §9.3.4 allows
		// an ETag on the response only if the new representation is that
		// content untransformed.
		fw.sent = &hashingBody{ReadCloser: http.NoBody, length: fwd.ContentLength, h: m.hashers.Get().(hashing.Hasher), json: m.newJSONHasher()}
		fw.sent.h.Reset()
		defer fw.sent.release(m)
		if fwd.Body == nil || fwd.Body == http.NoBody {
			fw.sent.eof = true
		} else {
			fw.sent.ReadCloser = fwd.Body
			if fwd == r {
				fwd = fwd.WithContext(fwd.Context()) // a shallow copy whose Body can change
			}
			fwd.Body = fw.sent
		}
	}
	// Whatever happens upstream, cached ETags of this resource are suspect
	// from now on. A 2xx invalidates them as soon as the upstream answers,
	// and the read after the write may then refill the cache with the new
	// ETag; any other ending invalidates here, before the lock is released.
	defer func() {
		if !fw.invalidated {
			m.invalidate(r.Context(), rk)
		}
	}()
	err := next.ServeHTTP(fw, fwd)
	if err != nil && !fw.done {
		if lost, lerr := m.leaseLost(w, r, inFlight); lost {
			return lerr
		}
	}
	return err
}

// forwardWriter carries a write's response to the client. When the upstream
// answers 2xx, it invalidates the cache and, while the write lock is still
// held, fetches the new representation to put its ETag on the response.
type forwardWriter struct {
	http.ResponseWriter
	m      *Middleware
	r      *http.Request
	method string // whose rules apply, see writeMethod
	rk     resourceKey
	next   Handler
	sent   *hashingBody // a PUT's content as it went upstream, when hashed
	// unlocked is set for a write whose method is not enforced: it holds
	// no lock, so a read after it would not be its own.
	unlocked bool
	done     bool
	// invalidated is set once a 2xx has invalidated the cache.
	invalidated bool
	// newETag is the ETag the read after the write found, if any.
	newETag string
}

func (f *forwardWriter) WriteHeader(code int) {
	if f.done || (code >= 100 && code < 200) {
		f.ResponseWriter.WriteHeader(code)
		return
	}
	f.done = true
	if code >= 200 && code < 300 {
		f.afterWrite()
		f.m.written(f, code)
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *forwardWriter) Write(p []byte) (int, error) {
	if !f.done {
		f.WriteHeader(http.StatusOK)
	}
	return f.ResponseWriter.Write(p)
}

func (f *forwardWriter) Flush() { _ = f.FlushError() }

func (f *forwardWriter) FlushError() error {
	if !f.done {
		f.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(f.ResponseWriter).Flush()
}

func (f *forwardWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(f.ResponseWriter).Hijack()
}

func (f *forwardWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

func (f *forwardWriter) afterWrite() {
	m, h := f.m, f.ResponseWriter.Header()
	m.invalidate(f.r.Context(), f.rk)
	f.invalidated = true
	if f.unlocked {
		return
	}
	if t, err := hashing.ParseTag(h.Get("Etag")); err != nil || t.Weak || !m.cfg.KeepUpstreamETag {
		delete(h, "Etag") // not a validator of ours
	}
	if !m.cfg.ETagAfterWrite || f.method == http.MethodDelete {
		return
	}
	cur, err := m.current(f.r, f.rk, f.next, false)
	if err != nil {
		m.log.Warn("cannot read the representation after a write; answering without ETag", requestFields(f.r, zap.Error(err))...)
		return
	}
	if !cur.exists || cur.etag.Opaque == "" {
		return
	}
	f.newETag = cur.etag.Opaque
	if f.method == http.MethodPut && !f.sent.matches(cur.digest, cur.semantic) {
		// The upstream stored something other than the content it was
		// sent (normalised, or with fields of its own): an ETag here would
		// tell the client its own body is the new representation, which
		// RFC 9110 §9.3.4 forbids. The client GETs the new ETag instead.
		m.log.Debug("PUT content was transformed upstream; answering without ETag", requestFields(f.r)...)
		return
	}
	h["Etag"] = []string{cur.etag.Opaque}
	exposeETag(h)
}

// hashingBody hashes a request body as the rest of the route reads it. The
// transport may still be sending the body when the response arrives, so
// the hash is guarded.
type hashingBody struct {
	io.ReadCloser
	length int64 // the declared Content-Length, -1 when unknown
	mu     sync.Mutex
	h      hashing.Hasher
	json   *hashing.JSONHasher // with json_ignore or json_only: the content's tokens
	n      int64
	eof    bool // the whole body was read
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	if b.h != nil {
		_, _ = b.h.Write(p[:n])
		if b.json != nil {
			_, _ = b.json.Write(p[:n])
		}
		b.n += int64(n)
		// A transport sends a body of known length without waiting for
		// io.EOF, so the upstream may answer before that read happens.
		if err == io.EOF || (b.length >= 0 && b.n == b.length) {
			b.eof = true
		}
	}
	b.mu.Unlock()
	return n, err
}

// release returns the hashers to their pools; reads still under way in
// the transport after that no longer touch them.
func (b *hashingBody) release(m *Middleware) {
	b.mu.Lock()
	h, j := b.h, b.json
	b.h, b.json = nil, nil
	b.mu.Unlock()
	m.hashers.Put(h)
	m.releaseJSONHasher(j)
}

// matches reports whether the whole body was read and hashes to digest:
// its bytes, or with semantic its JSON tokens (the content must then be
// JSON).
func (b *hashingBody) matches(digest string, semantic bool) bool {
	if b == nil || digest == "" {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof || b.h == nil {
		return false
	}
	var buf [80]byte
	if semantic {
		return b.json != nil && b.json.Valid() && string(b.json.AppendETag(buf[:0])) == digest
	}
	return string(b.h.AppendETag(buf[:0])) == digest
}
