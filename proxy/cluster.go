package proxy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/zeebo/xxh3"
	"go.uber.org/zap"
)

// ResourceKey identifies a resource: the 128-bit hash of its key
// template's value, the same in every replica.
type ResourceKey = xxh3.Uint128

// Cluster makes the replicas of a gateway act as one: a write's lock is
// taken in every replica, and cache entries carry generations that every
// replica sees change. Package cluster implements it on Redis. Without
// one, the lock table and the generations are this process's own.
type Cluster interface {
	// Lock takes rk's write lock across the replicas; ctx bounds the wait.
	// An error other than ctx's own means the cluster is unreachable.
	Lock(ctx context.Context, rk ResourceKey) (Lease, error)
	// Generation returns rk's generation for a read that may use or fill
	// the cache; an error means this read goes without the cache.
	Generation(ctx context.Context, rk ResourceKey) (uint64, error)
	// Invalidate gives rk a new generation, for a write without the lock.
	Invalidate(ctx context.Context, rk ResourceKey) error
}

// Lease is a held write lock: the local table's, or the cluster's.
type Lease interface {
	// Context ends when the lock may have been lost before Unlock, so that
	// whatever it bounds stops: the upstream request of the write.
	Context() context.Context
	// Check reports whether the lock still holds, with a margin; it is
	// asked right before the write is forwarded.
	Check() error
	// Generation is the generation cache entries of the resource must
	// carry to be current while this lock is held.
	Generation() uint64
	// Invalidate voids the resource's cache entries: the write may have
	// changed it.
	Invalidate()
	// Unlock releases the lock.
	Unlock() error
}

// localLease is this process's lock, with the generations of its cache.
type localLease struct {
	unlock func()
	cache  *etagCache
	rk     resourceKey
}

func (l localLease) Context() context.Context { return context.Background() } // never lost
func (l localLease) Check() error             { return nil }
func (l localLease) Generation() uint64       { return l.cache.generation(l.rk) }
func (l localLease) Invalidate()              { l.cache.invalidate(l.rk) }
func (l localLease) Unlock() error            { l.unlock(); return nil }

// sharedLease is the cluster's lock taken after the local one, which it
// releases last.
type sharedLease struct {
	Lease
	local func()
}

func (l sharedLease) Unlock() error {
	err := l.Lease.Unlock()
	l.local()
	return err
}

type leaseKey struct{}

// underLease returns r with lease attached, and with a context that also
// ends when the lease is lost, so that the gateway's own GETs and the
// forwarded write stop when the lock may have passed to another replica.
func underLease(r *http.Request, lease Lease) (*http.Request, context.CancelFunc) {
	ctx := context.WithValue(r.Context(), leaseKey{}, lease)
	lost := lease.Context()
	if lost.Done() == nil {
		return r.WithContext(ctx), func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(lost, func() { cancel(context.Cause(lost)) })
	return r.WithContext(ctx), func() {
		stop()
		cancel(context.Canceled)
	}
}

// leaseOf returns the lease a request holds, if any.
func leaseOf(ctx context.Context) Lease {
	l, _ := ctx.Value(leaseKey{}).(Lease)
	return l
}

// lost reports whether the write lock was lost before its holder was done.
func lost(lease Lease) bool {
	return lease.Check() != nil
}

// generation returns the generation a cache lookup or fill for rk uses:
// the held lease's, else the cluster's, else this process's. ok is false
// when this request must go without the cache.
func (m *Middleware) generation(ctx context.Context, rk resourceKey) (gen uint64, ok bool) {
	if l := leaseOf(ctx); l != nil {
		return l.Generation(), true
	}
	if m.cfg.Cluster == nil {
		return m.cache.generation(rk), true
	}
	gen, err := m.cfg.Cluster.Generation(ctx, rk)
	if err != nil {
		m.log.Debug("no shared cache generation; going without the cache", zap.Error(err))
		return 0, false
	}
	return gen, true
}

// invalidate voids rk's cache entries: through the held lease, which
// tells the cluster when it is released, else at once.
func (m *Middleware) invalidate(ctx context.Context, rk resourceKey) {
	if l := leaseOf(ctx); l != nil {
		l.Invalidate()
		return
	}
	m.cache.invalidate(rk)
	if m.cfg.Cluster == nil {
		return
	}
	// The write has gone upstream: its client leaving must not stop this.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := m.cfg.Cluster.Invalidate(ctx, rk); err != nil {
		m.log.Warn("cannot invalidate the shared cache generation; replicas that still reach the cluster may use a stale entry until its ttl", zap.Error(err))
	}
}

// unlock releases a write's lock.
func (m *Middleware) unlock(r *http.Request, lease Lease) {
	if err := lease.Unlock(); err != nil {
		m.log.Warn("releasing the write lock failed; other replicas wait until its lease ends", requestFields(r, zap.Error(err))...)
	}
}

// leaseLost answers a write whose cluster lock may have passed to another
// replica, and reports whether it did. Found before the write was
// forwarded, the write is not forwarded; found while the upstream had it,
// the upstream request was cancelled, and the write may or may not have
// been applied.
func (m *Middleware) leaseLost(w http.ResponseWriter, r *http.Request, while string) (bool, error) {
	l := leaseOf(r.Context())
	if l == nil || !lost(l) {
		return false, nil
	}
	m.observe(LeaseLost)
	m.log.Warn("write lock lost; write stopped", requestFields(r, zap.String("while", while), zap.Error(l.Check()))...)
	if while == inFlight {
		return true, m.unavailable(w, r, fmt.Sprintf("the write lock of %s was lost while the upstream had the %s, so its request was cancelled; it may or may not have been applied: GET the resource before retrying",
			r.URL.Path, r.Method))
	}
	return true, m.unavailable(w, r, fmt.Sprintf("the write lock of %s was lost %s, so the %s was not forwarded; retry later", r.URL.Path, while, r.Method))
}

// inFlight names the moment a lease is lost after the write was forwarded.
const inFlight = "while the upstream had the write"

// clusterUnavailable answers a write whose lock the cluster could not
// give: nothing is forwarded without it.
func (m *Middleware) clusterUnavailable(w http.ResponseWriter, r *http.Request, err error) error {
	m.observe(ClusterUnavailable)
	m.log.Error("cluster unreachable; write not forwarded", requestFields(r, zap.Error(err))...)
	return m.unavailable(w, r, fmt.Sprintf("the gateway cannot reach the lock service its replicas share, so the %s of %s was not forwarded; retry later",
		r.Method, r.URL.Path))
}
