package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etaggate/etaggate/feed"
	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/proxy"
)

func init() {
	caddy.RegisterModule(ETag{})
	httpcaddyfile.RegisterHandlerDirective("etag", parseETagCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("etag", httpcaddyfile.Before, "reverse_proxy")
}

// defaultKey is the resource key template when none is configured.
const defaultKey = "{http.request.host}{http.request.uri}"

// ETag gives GET and HEAD responses strong ETags computed from their bodies,
// answers If-None-Match with 304, and refuses a PUT, PATCH or DELETE whose
// If-Match is stale with 412 before it reaches the upstream, serialising
// writes per resource so that no update is lost through the gateway.
type ETag struct {
	// Hash computes ETags from bodies: xxh3 (128-bit, the default), sha256
	// or blake3.
	Hash string `json:"hash,omitempty"`

	// Methods lists the unsafe methods whose preconditions are enforced.
	// Default: PUT PATCH DELETE.
	Methods []string `json:"methods,omitempty"`

	// RequirePrecondition answers 428 Precondition Required to an enforced
	// request without a precondition that is evaluated (If-Match,
	// If-None-Match listing a tag or *, or an If-Unmodified-Since date on a
	// resource that has Last-Modified).
	RequirePrecondition bool `json:"require_precondition,omitempty"`

	// RequirePreconditionMethods, when set, requires a precondition of
	// these methods only (they must be among Methods); the others are
	// still enforced when they carry one. Setting it implies
	// RequirePrecondition. Default: every enforced method.
	RequirePreconditionMethods []string `json:"require_precondition_methods,omitempty"`

	// Verify says where the current ETag of a write's target comes from:
	// "upstream" (the default) GETs it through the rest of the route;
	// "cache" trusts a fresh cache entry, which is correct only when every
	// write to the upstream passes through this gateway.
	Verify string `json:"verify,omitempty"`

	// Revalidate says where a read's If-None-Match is answered from:
	// "upstream" (the default) reads the representation through the rest
	// of the route; "cache" answers 304 from a fresh cache entry without
	// asking the upstream, which is correct only when every write to the
	// upstream passes through this gateway.
	Revalidate string `json:"revalidate,omitempty"`

	// MaxBody is the largest body, in bytes, that is buffered and hashed;
	// larger bodies stream through without an ETag. Default: 16 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// CacheSize bounds the memory of the ETag cache, in bytes. Default: 64 MiB.
	CacheSize int64 `json:"cache_size,omitempty"`

	// TTL is the lifetime of a cache entry. Default: 10m.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Key is the placeholder template naming a resource: requests with the
	// same key share a write lock and cache entries. Default:
	// {http.request.host}{http.request.uri}.
	Key string `json:"key,omitempty"`

	// Vary lists the request headers whose values key the cache, on top of
	// any the upstream names in its Vary. Default: Authorization Cookie. An
	// empty list keys by the resource alone.
	Vary *[]string `json:"vary,omitempty"`

	// UpstreamETag is "keep" (the default) to keep a strong ETag the
	// upstream sent, or "replace" to always hash the body. Weak upstream
	// ETags are always replaced.
	UpstreamETag string `json:"upstream_etag,omitempty"`

	// ETagAfterWrite fetches the representation after a successful write,
	// still under the resource's lock, and returns its ETag on the write's
	// response. Default: true.
	ETagAfterWrite *bool `json:"etag_after_write,omitempty"`

	// LockWait is the longest a write waits for its resource's lock; a
	// write that waited that long is answered 503 with Retry-After and not
	// forwarded. Default: 10s.
	LockWait caddy.Duration `json:"lock_wait,omitempty"`

	// CheckTimeout is the deadline of the gateway's own GETs: a check that
	// misses it answers the write 504 without forwarding it; a read after
	// a write that misses it leaves the write's response without an ETag.
	// Default: 10s.
	CheckTimeout caddy.Duration `json:"check_timeout,omitempty"`

	// BufferMemory bounds the bytes of the bodies this handler holds in
	// memory at once (responses being hashed, writes' bodies waiting for
	// their lock); bodies that do not fit go to temporary files. Default:
	// 256 MiB.
	BufferMemory int64 `json:"buffer_memory,omitempty"`

	// JSONIgnore lists JSON Pointers (RFC 6901; a "*" segment matches every
	// member or element at its level) to members left out of the ETag of a
	// 200 application/json or +json body: the operator declares them not
	// part of the resource's state. The ETag is then the hash of the
	// body's JSON tokens, whitespace aside.
	JSONIgnore []string `json:"json_ignore,omitempty"`

	// JSONOnly lists JSON Pointers to the only members that make the ETag
	// of such a body (with everything inside them); a body with none of
	// them counts whole. It excludes json_ignore.
	JSONOnly []string `json:"json_only,omitempty"`

	// Changes serves a change feed of the writes through this handler.
	Changes *Changes `json:"changes,omitempty"`

	engine    *proxy.Middleware
	collector *etagCollector
	locksHeld bool
	feed      *feed.Feed
	feedEnd   *shutdownCloser
}

// writeLocks holds the write-lock table that every etag handler of the
// process shares. A reload provisions the new handlers before it cleans up
// the old ones, so the table, and with it the serialisation of writes that
// are still in flight, survives the hand-over. Sharing it between handlers
// can only serialise more, never less.
var writeLocks = caddy.NewUsagePool()

const writeLocksKey = "etag.write_locks"

type sharedLocks struct{ *proxy.Locks }

func (sharedLocks) Destruct() error { return nil }

// CaddyModule returns the Caddy module information.
func (ETag) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.etag",
		New: func() caddy.Module { return new(ETag) },
	}
}

// Provision fills in the defaults (the engine's DefaultConfig) and builds
// the engine. Caddy validates a module only after provisioning it, so the
// fields are validated first: the engine trusts what it is given.
func (e *ETag) Provision(ctx caddy.Context) error {
	if err := e.Validate(); err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	cfg.Logger = ctx.Logger()
	held, _, err := writeLocks.LoadOrNew(writeLocksKey, func() (caddy.Destructor, error) {
		return sharedLocks{proxy.NewLocks()}, nil
	})
	if err != nil {
		return err
	}
	e.locksHeld = true
	cfg.Locks = held.(sharedLocks).Locks
	redis, err := clusterClient(ctx)
	if err != nil {
		return err
	}
	cfg.Cluster = engineCluster(redis)
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		counters, err := etagOutcomes(reg)
		if err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
		cfg.Observe = func(o proxy.Outcome) { counters[o].Inc() }
	}
	if e.Changes != nil {
		if e.feed, err = e.Changes.provision(cfg.Logger, redis); err != nil {
			return err
		}
		e.feedEnd = newShutdownCloser(e.feed.Close)
		cfg.Written = e.feed.Written
	}
	if e.engine, err = proxy.New(cfg); err != nil {
		return err
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if e.collector, err = addETagCollector(reg, e.engine); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// Validate checks every field, naming the field and the fix. It is the one
// place where the module's values are checked.
func (e *ETag) Validate() error {
	if _, err := hashing.ParseAlgorithm(e.Hash); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	for _, m := range e.Methods {
		switch strings.ToUpper(m) {
		case "":
			return errors.New("methods: an empty method name; list methods such as PUT PATCH DELETE")
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodConnect:
			return fmt.Errorf("methods: %s is not an unsafe method; list methods such as PUT PATCH DELETE", strings.ToUpper(m))
		}
	}
	enforced := e.Methods
	if len(enforced) == 0 {
		enforced = proxy.DefaultConfig().Methods
	}
	for _, m := range e.RequirePreconditionMethods {
		if !slices.ContainsFunc(enforced, func(x string) bool { return strings.EqualFold(x, m) }) {
			return fmt.Errorf("require_precondition: %s is not one of methods (%s); list only methods that are enforced",
				strings.ToUpper(m), strings.ToUpper(strings.Join(enforced, " ")))
		}
	}
	if e.Verify != "" && e.Verify != "upstream" && e.Verify != "cache" {
		return fmt.Errorf("verify: unknown value %q: use upstream or cache", e.Verify)
	}
	if e.Revalidate != "" && e.Revalidate != "upstream" && e.Revalidate != "cache" {
		return fmt.Errorf("revalidate: unknown value %q: use upstream or cache", e.Revalidate)
	}
	if e.MaxBody < 0 {
		return fmt.Errorf("max_body: %d is negative; give a size such as 16MiB", e.MaxBody)
	}
	if e.CacheSize < 0 {
		return fmt.Errorf("cache_size: %d is negative; give a size such as 64MiB", e.CacheSize)
	}
	if e.TTL < 0 {
		return fmt.Errorf("ttl: %s is negative; give a duration such as 10m", time.Duration(e.TTL))
	}
	if e.UpstreamETag != "" && e.UpstreamETag != "keep" && e.UpstreamETag != "replace" {
		return fmt.Errorf("upstream_etag: unknown value %q: use keep or replace", e.UpstreamETag)
	}
	if e.LockWait < 0 {
		return fmt.Errorf("lock_wait: %s is negative; give a duration such as 10s", time.Duration(e.LockWait))
	}
	if e.CheckTimeout < 0 {
		return fmt.Errorf("check_timeout: %s is negative; give a duration such as 10s", time.Duration(e.CheckTimeout))
	}
	if e.BufferMemory < 0 {
		return fmt.Errorf("buffer_memory: %d is negative; give a size such as 256MiB", e.BufferMemory)
	}
	if e.Changes != nil {
		if err := e.Changes.validate(); err != nil {
			return err
		}
	}
	_, err := e.semantic()
	return err
}

// config turns the module's fields, once validated, into the engine's
// configuration: a zero field is the engine's default.
func (e *ETag) config() (proxy.Config, error) {
	cfg := proxy.DefaultConfig()
	var err error
	if cfg.Hash, err = hashing.ParseAlgorithm(e.Hash); err != nil {
		return cfg, fmt.Errorf("hash: %w", err)
	}
	if len(e.Methods) > 0 {
		cfg.Methods = make([]string, len(e.Methods))
		for i, m := range e.Methods {
			cfg.Methods[i] = strings.ToUpper(m)
		}
	}
	cfg.RequirePrecondition = e.RequirePrecondition || len(e.RequirePreconditionMethods) > 0
	for _, m := range e.RequirePreconditionMethods {
		cfg.RequireMethods = append(cfg.RequireMethods, strings.ToUpper(m))
	}
	if e.Verify == "cache" {
		cfg.Verify = proxy.VerifyCache
	}
	if e.Revalidate == "cache" {
		cfg.Revalidate = proxy.RevalidateCache
	}
	if e.MaxBody > 0 {
		cfg.MaxBody = e.MaxBody
	}
	if e.CacheSize > 0 {
		cfg.CacheSize = e.CacheSize
	}
	if e.TTL > 0 {
		cfg.TTL = time.Duration(e.TTL)
	}
	if e.Vary != nil {
		cfg.Vary = *e.Vary
	}
	cfg.KeepUpstreamETag = e.UpstreamETag != "replace"
	if e.ETagAfterWrite != nil {
		cfg.ETagAfterWrite = *e.ETagAfterWrite
	}
	if e.LockWait > 0 {
		cfg.LockWait = time.Duration(e.LockWait)
	}
	if e.CheckTimeout > 0 {
		cfg.CheckTimeout = time.Duration(e.CheckTimeout)
	}
	if e.BufferMemory > 0 {
		cfg.BufferMemory = e.BufferMemory
	}
	if cfg.Semantic, err = e.semantic(); err != nil {
		return cfg, err
	}
	if e.Key != "" && e.Key != defaultKey {
		tmpl := e.Key
		cfg.Key = func(r *http.Request) string {
			repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if !ok {
				return r.Host + r.RequestURI
			}
			return repl.ReplaceAll(tmpl, "")
		}
	}
	cfg.RouteError = routeError
	cfg.ErrorStatus = func(err error) int {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			return he.StatusCode
		}
		return http.StatusBadGateway
	}
	cfg.Detach = detachVars
	return cfg, nil
}

// detachVars gives one of the gateway's own GETs a copy of the request's
// variables: reverse_proxy sets variables on every request it sends and
// reads them again in dials that may outlive the request, so two requests
// sharing one map race.
func detachVars(ctx context.Context) context.Context {
	vars, ok := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, caddyhttp.VarsCtxKey, maps.Clone(vars))
}

// Cleanup stops the engine's cache, removes its temporary files and ends
// the feed's streams.
func (e *ETag) Cleanup() error {
	if e.collector != nil {
		e.collector.remove(e.engine)
	}
	if e.engine != nil {
		e.engine.Close()
	}
	if e.feed != nil {
		_ = e.feed.Close()
	}
	if e.locksHeld {
		_, _ = writeLocks.Delete(writeLocksKey)
		e.locksHeld = false
	}
	return nil
}

// ServeHTTP serves the change feed's path itself and hands every other
// request to the engine in front of the rest of the route.
func (e *ETag) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if e.feed != nil && e.feed.Match(r) {
		e.feedEnd.watch(r)
		return e.feed.Serve(w, r)
	}
	return e.engine.ServeHTTP(w, r, next)
}

// etagOutcomes registers, or finds already registered by another etag
// handler of the same configuration, the counter of request outcomes, and
// returns one ready child per outcome so the hot path does no label lookup.
func etagOutcomes(reg prometheus.Registerer) ([]prometheus.Counter, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "etag",
		Name:      "requests_total",
		Help:      "Requests handled by the etag handler, by outcome.",
	}, []string{"outcome"})
	if err := reg.Register(vec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		vec = existing
	}
	outcomes := proxy.Outcomes()
	counters := make([]prometheus.Counter, len(outcomes))
	for i, o := range outcomes {
		counters[i] = vec.WithLabelValues(o.String())
	}
	return counters, nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*ETag)(nil)
	_ caddy.Validator             = (*ETag)(nil)
	_ caddy.CleanerUpper          = (*ETag)(nil)
	_ caddyhttp.MiddlewareHandler = (*ETag)(nil)
)
