package proxy

import (
	"context"
	"net/http"
	"sync"
)

// Locks serialises requests per resource key. Entries exist only while a
// request holds or waits for a key, so the table cannot grow without bound.
// One Locks may be shared by several Middlewares, so that writes stay
// serialised while a configuration reload hands over from one to the next.
type Locks struct {
	shards [64]lockShard
}

type lockShard struct {
	mu sync.Mutex
	m  map[uint64]*keyLock
}

type keyLock struct {
	ch   chan struct{} // a one-slot semaphore: full while held
	refs int           // holders plus waiters, guarded by the shard's mu
}

// NewLocks returns an empty lock table.
func NewLocks() *Locks {
	t := &Locks{}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*keyLock)
	}
	return t
}

// lock waits for key's lock or for ctx to end. On success the caller must
// call unlock exactly once.
func (t *Locks) lock(ctx context.Context, key uint64) (unlock func(), err error) {
	s := &t.shards[key%uint64(len(t.shards))]
	s.mu.Lock()
	l := s.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		s.m[key] = l
	}
	l.refs++
	s.mu.Unlock()

	release := func() {
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.m, key)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			release()
		})
	}, nil
}

// Len returns how many keys are held or waited for.
func (t *Locks) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// lockWrite takes the write lock of r's resource, this process's first and
// then the cluster's, waiting at most lock_wait for both: the deadline
// bounds the whole wait, whatever the lock is made of. A write that cannot
// have the lock is answered here, in one place; one whose client left
// while it waited is dropped. ok is false in both cases, and the write
// must not be forwarded; err is then what the answer returns (see refuse).
func (m *Middleware) lockWrite(w http.ResponseWriter, r *http.Request, rk resourceKey) (lease Lease, ok bool, err error) {
	ctx, cancel := context.WithTimeout(r.Context(), m.cfg.LockWait)
	defer cancel()
	unlock, err := m.locks.lock(ctx, rk.Lo)
	if err == nil && m.cfg.Cluster == nil {
		return localLease{unlock: unlock, cache: m.cache, rk: rk}, true, nil
	}
	if err == nil {
		var shared Lease
		if shared, err = m.cfg.Cluster.Lock(ctx, rk); err == nil {
			return sharedLease{Lease: shared, local: unlock}, true, nil
		}
		unlock()
	}
	if m.clientGone(r, "waiting for the resource's write lock") {
		return nil, false, nil
	}
	if ctx.Err() == nil {
		return nil, false, m.clusterUnavailable(w, r, err)
	}
	return nil, false, m.lockUnavailable(w, r, err)
}
