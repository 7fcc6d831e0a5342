// Package proxy is etaggate's conditional-request engine, plain net/http
// middleware: it gives upstream responses strong ETags, evaluates RFC 9110
// preconditions at the gateway and serialises writes per resource, so that a
// legacy API that knows nothing of ETags becomes safe for concurrent editing.
package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/problem"
)

// Handler is the rest of the route. It has the shape of caddyhttp.Handler,
// so a Caddy route plugs in as is: errors are returned, not written.
type Handler interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP calls f.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Verify says where the current ETag of a write's target comes from.
type Verify uint8

const (
	// VerifyUpstream GETs the resource through the rest of the route.
	VerifyUpstream Verify = iota
	// VerifyCache trusts a fresh cache entry; correct only when every write
	// to the upstream passes through this gateway.
	VerifyCache
)

// Config configures a Middleware. DefaultConfig holds SPEC's defaults.
type Config struct {
	Hash                hashing.Algorithm
	Methods             []string // the unsafe methods whose preconditions are enforced
	RequirePrecondition bool
	Verify              Verify
	MaxBody             int64
	CacheSize           int64
	TTL                 time.Duration
	// Key returns the resource key of a request; nil means host plus
	// request URI, computed without allocating.
	Key func(*http.Request) string
	// Vary lists the request headers that key the cache.
	Vary []string
	// KeepUpstreamETag keeps a strong ETag the upstream sent instead of
	// hashing the body.
	KeepUpstreamETag bool
	// ETagAfterWrite fetches the new representation after a successful
	// write and returns its ETag.
	ETagAfterWrite bool
	// ErrorStatus maps an error returned by the rest of the route to a
	// status; nil means 502 for everything.
	ErrorStatus func(error) int
	// Observe, when set, is told the outcome of every request it handles.
	Observe func(Outcome)
	// Locks is the write-lock table; nil gives the Middleware its own.
	Locks  *Locks
	Logger *zap.Logger
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Hash:             hashing.XXH3,
		Methods:          []string{http.MethodPut, http.MethodPatch, http.MethodDelete},
		Verify:           VerifyUpstream,
		MaxBody:          16 << 20,
		CacheSize:        64 << 20,
		TTL:              10 * time.Minute,
		Vary:             []string{"Authorization", "Cookie"},
		KeepUpstreamETag: true,
		ETagAfterWrite:   true,
	}
}

// Middleware is the engine. It is safe for concurrent use; Close releases it.
type Middleware struct {
	cfg      Config
	vary     []string
	cache    *etagCache
	locks    *Locks
	log      *zap.Logger
	bufs     bufferPool
	hashers  sync.Pool
	writers  sync.Pool
	enforced map[string]bool
}

// New validates cfg and builds a Middleware.
func New(cfg Config) (*Middleware, error) {
	if cfg.MaxBody <= 0 {
		return nil, fmt.Errorf("max_body must be positive, got %d", cfg.MaxBody)
	}
	if cfg.CacheSize <= 0 {
		return nil, fmt.Errorf("cache_size must be positive, got %d", cfg.CacheSize)
	}
	if cfg.TTL <= 0 {
		return nil, fmt.Errorf("ttl must be positive, got %s", cfg.TTL)
	}
	m := &Middleware{cfg: cfg, locks: cfg.Locks, log: cfg.Logger, enforced: map[string]bool{}}
	if m.locks == nil {
		m.locks = NewLocks()
	}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	for _, meth := range cfg.Methods {
		if meth == http.MethodGet || meth == http.MethodHead {
			return nil, fmt.Errorf("methods: %s is a read; list only unsafe methods such as PUT PATCH DELETE", meth)
		}
		m.enforced[meth] = true
	}
	for _, v := range cfg.Vary {
		m.vary = append(m.vary, http.CanonicalHeaderKey(v))
	}
	c, err := newETagCache(cfg.CacheSize, cfg.TTL)
	if err != nil {
		return nil, err
	}
	m.cache = c
	m.hashers.New = func() any { return cfg.Hash.New() }
	m.writers.New = func() any { return new(bodyWriter) }
	return m, nil
}

// Close stops the cache's goroutines.
func (m *Middleware) Close() { m.cache.close() }

// LockedKeys returns how many resource keys are locked or waited for now.
func (m *Middleware) LockedKeys() int { return m.locks.Len() }

// Wrap adapts m to plain net/http in front of next.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	n := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		next.ServeHTTP(w, r)
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.ServeHTTP(w, r, n); err != nil {
			m.log.Error("request failed", requestFields(r, zap.Error(err))...)
			problem.Write(w, problem.New(m.gatewayStatus(err), err.Error()))
		}
	})
}

// ServeHTTP handles r in front of next.
func (m *Middleware) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return m.serveRead(w, r, next)
	case m.enforced[r.Method]:
		return m.serveWrite(w, r, next)
	}
	return next.ServeHTTP(w, r)
}

// resourceKey hashes the key template's value for r.
func (m *Middleware) resourceKey(r *http.Request) resourceKey {
	if m.cfg.Key != nil {
		return xxh3.HashString128(m.cfg.Key(r))
	}
	return mix(xxh3.HashString128(r.Host), r.RequestURI)
}

// conditionalFields are evaluated here against this gateway's ETags, so
// they must not reach an upstream that would compare them with its own.
// The date fields go too: an upstream that answered them itself would send
// a 304 without this gateway's ETag, or a 304 or 412 that RFC 9110 §13.2.2
// forbids because If-None-Match or If-Match takes precedence.
var conditionalFields = [...]string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}

func (m *Middleware) serveRead(w http.ResponseWriter, r *http.Request, next Handler) error {
	if err := checkSyntax(r); err != nil {
		m.badRequest(w, r, err)
		return nil
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

	var rk resourceKey
	var gen uint64
	useCache := m.cfg.Verify == VerifyCache
	if useCache {
		rk = m.resourceKey(r)
		gen = m.cache.generation(rk)
	}

	bw := m.newWriter(w, w.Header(), r.Method == http.MethodHead)
	defer m.releaseWriter(bw)
	err := callNext(bw, up, next)
	restoreFields(r.Header, &hidden) // idempotent; the defer covers panics
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
	etag := m.assignETag(h, bw)
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
		m.preconditionFailed(w, r, v.header, etag)
		return nil
	}
	m.observe(Tagged)
	if n := bw.buf.Len(); declaredLength(h) != int64(n) || len(h["Content-Length"]) != 1 {
		h["Content-Length"] = []string{strconv.Itoa(n)}
	}
	w.WriteHeader(bw.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(bw.buf.Bytes())
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

// assignETag sets and returns the response's ETag: the upstream's own when
// it is strong and configured to be kept, else the hash of the body.
func (m *Middleware) assignETag(h http.Header, bw *bodyWriter) hashing.Tag {
	if m.cfg.KeepUpstreamETag {
		if v := h["Etag"]; len(v) == 1 {
			if t, err := hashing.ParseTag(v[0]); err == nil && !t.Weak {
				return t
			}
		}
	}
	tag := hashing.Tag{Opaque: string(bw.hasher.AppendETag(bw.tagBuf[:0]))}
	h["Etag"] = []string{tag.Opaque}
	return tag
}

// notModifiedDrop lists what a 304 must not carry: the representation's
// metadata, except the fields RFC 9110 §15.4.5 requires (Cache-Control,
// Content-Location, Date, ETag, Expires, Vary). Last-Modified goes too: the
// ETag is the stronger validator.
var notModifiedDrop = [...]string{
	"Content-Type", "Content-Length", "Content-Encoding", "Content-Language",
	"Content-Range", "Content-Disposition", "Content-Md5", "Digest",
	"Content-Digest", "Repr-Digest", "Last-Modified", "Transfer-Encoding", "Trailer", "Accept-Ranges",
}

func writeNotModified(w http.ResponseWriter) {
	h := w.Header()
	for _, k := range notModifiedDrop {
		delete(h, k)
	}
	w.WriteHeader(http.StatusNotModified)
}

func lastModified(h http.Header) time.Time {
	v := first(h, "Last-Modified")
	if v == "" {
		return time.Time{}
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// callNext runs the rest of the route, recovering the abort that a stopped
// body provokes in reverse_proxy.
func callNext(bw *bodyWriter, r *http.Request, next Handler) (err error) {
	defer func() {
		if bw.stopped {
			if rec := recover(); rec != nil && rec != http.ErrAbortHandler {
				panic(rec)
			}
		}
	}()
	return next.ServeHTTP(bw, r)
}

func (m *Middleware) newWriter(client http.ResponseWriter, header http.Header, head bool) *bodyWriter {
	bw := m.writers.Get().(*bodyWriter)
	*bw = bodyWriter{
		client:  client,
		header:  header,
		headReq: head,
		maxBody: m.cfg.MaxBody,
		bufs:    &m.bufs,
		hasher:  m.hashers.Get().(hashing.Hasher),
	}
	bw.hasher.Reset()
	return bw
}

func (m *Middleware) releaseWriter(bw *bodyWriter) {
	if bw.buf != nil {
		m.bufs.put(bw.buf)
	}
	m.hashers.Put(bw.hasher)
	*bw = bodyWriter{}
	m.writers.Put(bw)
}

// Problems.

func (m *Middleware) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	field := ""
	var fe fieldError
	if errors.As(err, &fe) {
		field = fe.field
	}
	m.observe(Malformed)
	m.log.Info("malformed precondition", requestFields(r, zap.String("header", field), zap.Error(err))...)
	p := problem.New(http.StatusBadRequest, err.Error()+`; entity-tags are quoted, like "abc" or W/"abc", and separated by commas`)
	if field != "" {
		p.Extensions = map[string]any{"header": field}
	}
	problem.Write(w, p)
}

func (m *Middleware) preconditionFailed(w http.ResponseWriter, r *http.Request, field string, cur hashing.Tag) {
	m.observe(PreconditionFailed)
	m.log.Info("precondition failed", requestFields(r, zap.String("header", field), zap.String("etag", cur.Opaque))...)
	var detail string
	switch {
	case field == "If-None-Match" && r.Header.Get("If-None-Match") == "*":
		detail = "If-None-Match: * failed: the resource already exists"
	case field == "If-Match" && cur.Opaque == "":
		detail = "If-Match failed: the resource does not exist or has no current ETag"
	case field == "If-Unmodified-Since":
		detail = "If-Unmodified-Since failed: the resource was modified after that date"
	case field == "If-None-Match":
		detail = "If-None-Match failed: the current ETag is in the list"
	default:
		detail = "If-Match failed: the resource changed since you read it; GET it again and retry with its current ETag"
	}
	p := problem.New(http.StatusPreconditionFailed, detail)
	p.Extensions = map[string]any{"header": field}
	if cur.Opaque != "" {
		w.Header()["Etag"] = []string{cur.String()}
		p.Extensions["etag"] = cur.String()
	}
	problem.Write(w, p)
}

func requestFields(r *http.Request, extra ...zap.Field) []zap.Field {
	return append([]zap.Field{
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("uri", r.RequestURI),
		zap.String("remote_addr", r.RemoteAddr),
	}, extra...)
}
