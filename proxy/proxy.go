// Package proxy is etaggate's conditional-request engine, plain net/http
// middleware: it gives upstream responses strong ETags, evaluates RFC 9110
// preconditions at the gateway and serialises writes per resource, so that a
// legacy API that knows nothing of ETags becomes safe for concurrent editing.
package proxy

import (
	"context"
	"net/http"
	"os"
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

// Config configures a Middleware. DefaultConfig holds the defaults the
// README documents.
type Config struct {
	Hash                hashing.Algorithm
	Methods             []string // the unsafe methods whose preconditions are enforced
	RequirePrecondition bool
	// RequireMethods, with RequirePrecondition, lists the methods that need
	// a precondition; nil means every one of Methods.
	RequireMethods []string
	Verify         Verify
	Revalidate     Revalidate
	MaxBody        int64
	CacheSize      int64
	TTL            time.Duration
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
	// Semantic, when set, makes the ETag of a JSON body the hash of its
	// tokens under json_ignore or json_only.
	Semantic *hashing.Semantic
	// LockWait is the longest a write waits for its resource's lock before
	// it is answered 503.
	LockWait time.Duration
	// CheckTimeout is the deadline of the gateway's own GETs: the check of
	// a write's target and the read after the write.
	CheckTimeout time.Duration
	// BufferMemory bounds the bytes of the bodies held in memory at once;
	// the rest go to temporary files.
	BufferMemory int64
	// TempDir is where temporary files go; "" means os.TempDir().
	TempDir string
	// ErrorStatus maps an error returned by the rest of the route to a
	// status; nil means 502 for everything.
	ErrorStatus func(error) int
	// Detach, when set, derives the context of one of the gateway's own
	// GETs from the client request's. The rest of the route may keep
	// per-request state in the context that a request's transport still
	// reads after the request ended (Caddy's reverse_proxy dials in the
	// background and reads its variables there); a GET that wrote to the
	// same state would race with it.
	Detach func(context.Context) context.Context
	// Written, when set, is told of every write through the handler that
	// the upstream answered with a 2xx, enforced or not, before the write's
	// lock is released. It runs on the request's goroutine and must not
	// block.
	Written func(Written)
	// RouteError, when set, may take the engine's refusals (400, 404, 412,
	// 428, 502, 503 …) for the server's own error handling (Caddy's
	// handle_errors); see problem.Router. Nil: problem documents.
	RouteError problem.Router
	// Observe, when set, is told the outcome of every request it handles.
	Observe func(Outcome)
	// Cluster coordinates this gateway with its other replicas: write locks
	// across them and shared cache generations. nil for a gateway alone.
	Cluster Cluster
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
		LockWait:         10 * time.Second,
		CheckTimeout:     10 * time.Second,
		BufferMemory:     256 << 20,
	}
}

// Middleware is the engine. It is safe for concurrent use; Close releases it.
type Middleware struct {
	cfg     Config
	vary    []string
	cache   *etagCache
	locks   *Locks
	log     *zap.Logger
	bodies  spooler
	hashers sync.Pool
	writers sync.Pool
	// jsonHashers pools semantic hashers when cfg.Semantic is set.
	jsonHashers   sync.Pool
	notJSONLogged onceTable
	enforced      map[string]bool
	required      map[string]bool // the methods require_precondition applies to
}

// New builds a Middleware. It trusts cfg: start from DefaultConfig, and
// let the caller (the Caddy module's Validate) check what users set.
func New(cfg Config) (*Middleware, error) {
	m := &Middleware{cfg: cfg, locks: cfg.Locks, log: cfg.Logger, enforced: map[string]bool{}}
	m.bodies.limit = cfg.BufferMemory
	m.bodies.dir.parent = cfg.TempDir
	if m.bodies.dir.parent == "" {
		m.bodies.dir.parent = os.TempDir()
	}
	if m.locks == nil {
		m.locks = NewLocks()
	}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	for _, meth := range cfg.Methods {
		m.enforced[meth] = true
	}
	if cfg.RequirePrecondition {
		m.required = map[string]bool{}
		required := cfg.RequireMethods
		if required == nil {
			required = cfg.Methods
		}
		for _, meth := range required {
			m.required[meth] = true
		}
	}
	for _, v := range cfg.Vary {
		m.vary = append(m.vary, http.CanonicalHeaderKey(v))
	}
	c, err := newETagCache(cfg.CacheSize, cfg.TTL, cfg.Cluster != nil)
	if err != nil {
		return nil, err
	}
	m.cache = c
	m.hashers.New = func() any { return cfg.Hash.New() }
	m.writers.New = func() any { return new(bodyWriter) }
	if cfg.Semantic != nil {
		m.jsonHashers.New = func() any { return cfg.Semantic.NewHasher(cfg.Hash) }
	}
	return m, nil
}

// Close stops the cache's goroutines and removes the temporary files.
func (m *Middleware) Close() {
	m.cache.close()
	if err := m.bodies.dir.remove(); err != nil {
		m.log.Warn("cannot remove the directory of temporary files", zap.Error(err))
	}
}

// Stats are the figures a Middleware exports as metrics.
type Stats struct {
	MemoryBytes int64  // bytes of buffers held by bodies now
	DiskBytes   int64  // bytes of bodies in temporary files now
	Spills      uint64 // bodies moved to a temporary file, since New
}

// Stats reads the Middleware's figures.
func (m *Middleware) Stats() Stats {
	return Stats{
		MemoryBytes: m.bodies.memory.Load(),
		DiskBytes:   m.bodies.disk.Load(),
		Spills:      m.bodies.spills.Load(),
	}
}

// ServeHTTP handles r in front of next.
func (m *Middleware) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	method, err := m.writeMethod(r)
	switch {
	case err != nil:
		return m.badOverride(w, r, err)
	case m.enforced[method]:
		return m.serveWrite(w, r, next, method)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return m.serveRead(w, r, next)
	case !isSafe(method) && method != http.MethodConnect:
		return m.serveUnenforced(w, r, next, method)
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

func requestFields(r *http.Request, extra ...zap.Field) []zap.Field {
	return append([]zap.Field{
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("uri", r.RequestURI),
		zap.String("remote_addr", r.RemoteAddr),
	}, extra...)
}
