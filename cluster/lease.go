package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrLeaseLost is the cause of a lease's context when the lease may have
// ended before its holder released it: renewal failed for too long, or
// another holder has the lock. The holder must stop, since another replica
// may now take the lock.
var ErrLeaseLost = errors.New("the write lock's lease in Redis was lost (renewal failed before the lease ran out)")

// errReleased is the cause of a lease's context after Unlock.
var errReleased = errors.New("write lock released")

// Lease is a held write lock. It is renewed every third of the lease while
// held; when renewal cannot succeed in time, Context is cancelled with
// ErrLeaseLost one margin (a fifth of the lease) before the lease could
// end in Redis, counted from when the last successful renewal was sent.
type Lease struct {
	c      *Client
	k      keys
	token  string
	gen    atomic.Uint64 // the generation this holder leaves
	poison uint64        // the generation it set in Redis when it took the lock

	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{} // closed by Unlock

	mu       sync.Mutex
	deadline time.Time   // when this holder gives up, lease − margin after the last renewal sent
	lost     *time.Timer // cancels ctx at deadline
	renewal  *time.Timer // runs renew; no goroutine waits in between
	once     sync.Once
}

func (c *Client) newLease(k keys, token string, got acquired, sent time.Time) *Lease {
	l := &Lease{c: c, k: k, token: token, poison: got.poison, stop: make(chan struct{})}
	l.gen.Store(got.gen)
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	l.deadline = sent.Add(c.lease - c.margin)
	l.mu.Lock()
	l.lost = time.AfterFunc(time.Until(l.deadline), func() {
		if l.ctx.Err() == nil {
			c.log.Warn("write lock given up: no renewal succeeded within the lease minus its margin")
		}
		l.cancel(ErrLeaseLost)
	})
	l.renewal = time.AfterFunc(c.lease/3, l.renew)
	l.mu.Unlock()
	return l
}

// Context is cancelled when the lease is lost (cause ErrLeaseLost) or
// released. It does not derive from the context Lock was given, which
// bounded only the wait.
func (l *Lease) Context() context.Context { return l.ctx }

// Check reports whether the lease still holds with at least the margin
// left. Call it right before anything that must not happen without the
// lock: it reads the clock rather than waiting for the loss timer, which
// may not have run yet in a process that was paused.
func (l *Lease) Check() error {
	if err := context.Cause(l.ctx); err != nil {
		return err
	}
	l.mu.Lock()
	dl := l.deadline
	l.mu.Unlock()
	if !time.Now().Before(dl) {
		l.cancel(ErrLeaseLost)
		return ErrLeaseLost
	}
	return nil
}

// Generation is the resource's generation as this holder sees it: the one
// from before the lock (cache entries filled at it are current until the
// holder writes), or the one set by Invalidate.
func (l *Lease) Generation() uint64 { return l.gen.Load() }

// Invalidate gives the resource a new generation, which Unlock publishes.
// In Redis the old one is already void: taking the lock replaced it.
func (l *Lease) Invalidate() { l.gen.Store(newGeneration()) }

// Unlock releases the lock, publishes the generation and wakes waiters in
// every replica, with the next round trip this process makes (within
// releaseDelay). It is idempotent and never fails: a release that cannot
// reach Redis is retried, and logged, while the lease runs.
func (l *Lease) Unlock() error {
	l.once.Do(func() {
		close(l.stop)
		l.mu.Lock()
		l.lost.Stop()
		l.renewal.Stop()
		until := l.deadline.Add(l.c.margin)
		l.mu.Unlock()
		// Released even when lost here: if Redis still has this holder's
		// token, waiters need not wait out the lease.
		l.c.release(l.k, l.token, l.gen.Load(), l.poison, until)
		l.cancel(errReleased)
	})
	return nil
}

// renew extends the lease, run by the renewal timer every third of the
// lease until Unlock; it gives the lease up when Redis says another holder
// has it. While it runs, Close waits for it.
func (l *Lease) renew() {
	if !l.c.enter() {
		l.cancel(ErrLeaseLost) // the client is closing
		return
	}
	defer l.c.wg.Done()
	select {
	case <-l.stop:
		return
	case <-l.ctx.Done():
		return
	default:
	}
	sent := time.Now()
	l.mu.Lock()
	dl := l.deadline
	l.mu.Unlock()
	ctx, cancel := context.WithDeadline(l.c.ctx, dl)
	n, err := renewScript.Run(ctx, l.c.rdb, []string{l.k.lock}, l.token, ms(l.c.lease)).Int64()
	cancel()
	switch {
	case err == nil && n == 1:
		l.extend(sent)
		l.next(l.c.lease / 3)
	case err == nil:
		l.c.log.Warn("write lock lost: its key in Redis expired or has another holder")
		l.cancel(ErrLeaseLost)
	default:
		l.c.log.Warn("renewing a write lock failed; retrying until its lease runs out", zap.Error(err))
		l.next(l.c.lease / 15)
	}
}

// next schedules the next renewal, unless the lease ended.
func (l *Lease) next(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
	case <-l.ctx.Done():
	default:
		l.renewal.Reset(d)
	}
}

// extend moves the deadline after a renewal sent at sent succeeded.
func (l *Lease) extend(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	l.deadline = sent.Add(l.c.lease - l.c.margin)
	l.lost.Reset(time.Until(l.deadline))
}
