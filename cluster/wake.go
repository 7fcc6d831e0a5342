package cluster

import (
	"context"
	"sync"
	"time"
)

// wakeup wakes this process's lock waiters when a lock is released
// anywhere in the cluster. The process's subscription carries every
// release; waiters register locally, before their attempt, so that a
// release between a failed attempt and the wait is not missed.
type wakeup struct {
	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
}

// waiter is one Lock call's wake-up signal.
type waiter struct{ ch chan struct{} }

func newWakeup() *wakeup {
	return &wakeup{waiters: make(map[string]map[*waiter]struct{})}
}

func (w *wakeup) register(id string) *waiter {
	wt := &waiter{ch: make(chan struct{}, 1)}
	w.mu.Lock()
	set := w.waiters[id]
	if set == nil {
		set = make(map[*waiter]struct{}, 1)
		w.waiters[id] = set
	}
	set[wt] = struct{}{}
	w.mu.Unlock()
	return wt
}

func (w *wakeup) unregister(id string, wt *waiter) {
	w.mu.Lock()
	if set := w.waiters[id]; set != nil {
		delete(set, wt)
		if len(set) == 0 {
			delete(w.waiters, id)
		}
	}
	w.mu.Unlock()
}

// wake signals the waiters of id, or of every resource when id is "".
func (w *wakeup) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id != "" {
		signal(w.waiters[id])
		return
	}
	for _, set := range w.waiters {
		signal(set)
	}
}

func signal(set map[*waiter]struct{}) {
	for wt := range set {
		select {
		case wt.ch <- struct{}{}:
		default: // already signalled
		}
	}
}

// wait blocks until the waiter is woken, the holder's lease may have run
// out (after retryIn), or ctx ends. The timer is not a polling interval:
// it fires once, when the lock would expire by itself.
func (wt *waiter) wait(ctx context.Context, retryIn time.Duration) error {
	if retryIn <= 0 {
		return ctx.Err() // expired a moment ago: try again now
	}
	t := time.NewTimer(retryIn + time.Millisecond)
	defer t.Stop()
	select {
	case <-wt.ch:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
