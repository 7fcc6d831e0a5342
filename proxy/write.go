package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/problem"
)

// writeConditionals guard a write; they are enforced here and stripped
// before the write goes upstream, whose ETags (if any) differ from ours.
var writeConditionals = [...]string{"If-Match", "If-None-Match", "If-Unmodified-Since"}

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
	if m.cfg.Verify == VerifyCache {
		vk = variantOf(rk, m.vary, r.Header)
	}
	if fromCache {
		if e, ok := m.cache.get(rk, vk, r.Header); ok {
			cur := current{exists: true, etag: hashing.Tag{Opaque: e.etag}}
			if e.lastModified != 0 {
				cur.lastModified = time.Unix(e.lastModified, 0)
			}
			return cur, nil
		}
	}
	gen := m.cache.generation(rk)
	g := internalGet(r)
	bw := m.newWriter(nil, make(http.Header), false)
	defer m.releaseWriter(bw)
	err := callNext(bw, g, next)
	if err != nil && !bw.stopped {
		return current{}, &checkError{status: m.gatewayStatus(err), err: fmt.Errorf("GET %s: %w", r.RequestURI, err)}
	}
	switch s := bw.status; {
	case s >= 200 && s < 300:
		cur := current{exists: true, lastModified: lastModified(bw.header)}
		if bw.buffered() {
			cur.digest = string(bw.hasher.AppendETag(bw.tagBuf[:0]))
			cur.etag = m.assignETag(bw.header, bw)
			if m.cfg.Verify == VerifyCache {
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

// internalGet derives from a write the GET that reads its target: same URI
// and headers, minus the body and anything conditional.
func internalGet(r *http.Request) *http.Request {
	g := r.Clone(r.Context())
	g.Method = http.MethodGet
	g.Body = http.NoBody
	g.GetBody = nil
	g.ContentLength = 0
	g.TransferEncoding = nil
	for _, f := range [...]string{
		"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range",
		"Content-Type", "Content-Length", "Content-Encoding", "Content-Language", "Content-Range",
		"Content-Md5", "Content-Digest", "Repr-Digest", "Expect", "Transfer-Encoding", "Trailer",
	} {
		delete(g.Header, f)
	}
	return g
}

// gatewayStatus maps an error from the rest of the route to 504 for a
// timeout and 502 for anything else.
func (m *Middleware) gatewayStatus(err error) int {
	if m.cfg.ErrorStatus != nil && m.cfg.ErrorStatus(err) == http.StatusGatewayTimeout {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func (m *Middleware) checkFailed(w http.ResponseWriter, r *http.Request, err error) {
	var ce *checkError
	if !errors.As(err, &ce) {
		ce = &checkError{status: http.StatusBadGateway, err: err}
	}
	m.observe(CheckFailed)
	m.log.Warn("cannot read the current representation; write not forwarded", requestFields(r, zap.Int("status", ce.status), zap.Error(err))...)
	var detail string
	if ce.status < 500 {
		// The client may not read the resource; relay why, so it can fix it.
		for _, k := range [...]string{"Www-Authenticate", "Retry-After"} {
			if v := ce.header[k]; len(v) > 0 {
				w.Header()[k] = v
			}
		}
		detail = fmt.Sprintf("reading the current state of %s answered %d %s, so the %s was not forwarded", r.URL.Path, ce.status, http.StatusText(ce.status), r.Method)
	} else {
		detail = fmt.Sprintf("could not read the current state of %s to check the preconditions (%v), so the %s was not forwarded; retry later", r.URL.Path, ce.err, r.Method)
	}
	problem.Write(w, problem.New(ce.status, detail))
}

func (m *Middleware) preconditionRequired(w http.ResponseWriter, r *http.Request) {
	m.observe(PreconditionRequired)
	m.log.Info("precondition required", requestFields(r)...)
	problem.Write(w, problem.New(http.StatusPreconditionRequired, fmt.Sprintf(
		"%s %s needs a precondition: GET the resource and send its ETag in If-Match, or send If-None-Match: * to create it", r.Method, r.URL.Path)))
}

// forwardWriter carries a write's response to the client. When the upstream
// answers 2xx, it invalidates the cache and, while the write lock is still
// held, fetches the new representation to put its ETag on the response.
type forwardWriter struct {
	http.ResponseWriter
	m    *Middleware
	r    *http.Request
	rk   resourceKey
	next Handler
	sent *hashingBody // a PUT's content as it went upstream, when hashed
	done bool
	// invalidated is set once a 2xx has invalidated the cache.
	invalidated bool
}

func (f *forwardWriter) WriteHeader(code int) {
	if f.done || (code >= 100 && code < 200) {
		f.ResponseWriter.WriteHeader(code)
		return
	}
	f.done = true
	if code >= 200 && code < 300 {
		f.afterWrite()
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *forwardWriter) afterWrite() {
	m, h := f.m, f.ResponseWriter.Header()
	m.cache.invalidate(f.rk)
	f.invalidated = true
	if t, err := hashing.ParseTag(h.Get("Etag")); err != nil || t.Weak || !m.cfg.KeepUpstreamETag {
		delete(h, "Etag") // not a validator of ours
	}
	if !m.cfg.ETagAfterWrite || f.r.Method == http.MethodDelete {
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
	if f.r.Method == http.MethodPut && !f.sent.matches(cur.digest) {
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
	n      int64
	eof    bool // the whole body was read
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	if b.h != nil {
		_, _ = b.h.Write(p[:n])
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

// release returns the hasher to its pool; reads still under way in the
// transport after that no longer touch it.
func (b *hashingBody) release(pool *sync.Pool) {
	b.mu.Lock()
	h := b.h
	b.h = nil
	b.mu.Unlock()
	pool.Put(h)
}

// matches reports whether the whole body was read and hashes to digest.
func (b *hashingBody) matches(digest string) bool {
	if b == nil || digest == "" {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var buf [80]byte
	return b.eof && b.h != nil && string(b.h.AppendETag(buf[:0])) == digest
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
