package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestLockExcludesAcrossClients: writers on two clients (two replicas)
// never hold one resource's lock at the same time, and every one gets it.
func TestLockExcludesAcrossClients(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	replicas := []*Client{open(t, srv, 5*time.Second), open(t, srv, 5*time.Second)}
	rk := resource("/items/1")
	const writers, each = 16, 10
	var inside, most, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		c := replicas[i%2]
		wg.Go(func() {
			for range each {
				l, err := c.Lock(within(t, time.Minute), rk)
				if err != nil {
					errs <- err
					return
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(200 * time.Microsecond)
				inside.Add(-1)
				done.Add(1)
				if err := l.Unlock(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if most.Load() != 1 || done.Load() != writers*each {
		t.Fatalf("%d holders at once at most, %d of %d locks taken; want 1 and all", most.Load(), done.Load(), writers*each)
	}
}

// TestLockWaiterWokenOnRelease: a waiter on another replica gets the lock
// as soon as it is released, not when the lease would have run out.
func TestLockWaiterWokenOnRelease(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = 20 * time.Second
	a, b := open(t, srv, lease), open(t, srv, lease)
	rk := resource("/items/1")
	held := mustLock(t, a, rk)
	got := make(chan time.Time, 1)
	go func() {
		l, err := b.Lock(within(t, time.Minute), rk)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- time.Now()
		_ = l.Unlock()
	}()
	time.Sleep(300 * time.Millisecond) // b is waiting by now
	select {
	case <-got:
		t.Fatal("the waiter got the lock while it was held")
	default:
	}
	released := time.Now()
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	at, ok := <-got
	if !ok {
		t.FailNow()
	}
	if d := at.Sub(released); d > lease/4 {
		t.Fatalf("the waiter got the lock %s after its release: it was not woken", d)
	}
	t.Logf("hand-off across replicas in %s", at.Sub(released))
}

// TestLockWaitBoundedByContext: a waiter gives up when its context ends,
// with the context's error, and the holder is unaffected.
func TestLockWaitBoundedByContext(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	a, b := open(t, srv, 10*time.Second), open(t, srv, 10*time.Second)
	rk := resource("/items/1")
	held := mustLock(t, a, rk)
	defer held.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Lock(ctx, rk)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Lock returned %s after its deadline", d)
	}
	if err := held.Check(); err != nil {
		t.Fatalf("the holder's lease: %v", err)
	}
}

// TestLeaseRenewedWhileHeld: a lock held for several leases keeps its key
// in Redis, stays valid and keeps others out.
func TestLeaseRenewedWhileHeld(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = 3 * time.Second // renewal has a second of room on a busy machine
	a, b := open(t, srv, lease), open(t, srv, lease)
	rk := resource("/items/1")
	held := mustLock(t, a, rk)
	ctx, cancel := context.WithTimeout(context.Background(), 3*lease)
	defer cancel()
	if _, err := b.Lock(ctx, rk); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("another replica's Lock during three leases = %v, want it to time out", err)
	}
	if err := held.Check(); err != nil {
		t.Fatalf("after three leases: %v", err)
	}
	ttl := raw(t, srv).PTTL(context.Background(), a.keys(rk).lock).Val()
	if ttl <= 0 || ttl > lease {
		t.Fatalf("lock key's TTL %s, want within the lease", ttl)
	}
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	// The release goes with the next round trip, or alone within 1ms.
	for deadline := time.Now().Add(time.Second); raw(t, srv).Exists(context.Background(), a.keys(rk).lock).Val() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the lock key is still there a second after Unlock")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeaseLostWhenRedisStops: a holder that cannot renew is told, by its
// lease's context, before the lease could end in Redis.
func TestLeaseLostWhenRedisStops(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = time.Second
	a := open(t, srv, lease)
	held := mustLock(t, a, resource("/items/1"))
	srv.Pause() // Redis hangs: renewals time out
	defer srv.Resume()
	// By the time Redis could expire the key (a lease after the last
	// renewal, which was before the pause), the holder has given up: Check
	// reads the clock, whatever the timers' delay on a busy machine.
	time.Sleep(lease)
	if err := held.Check(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Check a lease after Redis stopped answering = %v, want ErrLeaseLost", err)
	}
	select {
	case <-held.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease's context was not cancelled")
	}
	if cause := context.Cause(held.Context()); !errors.Is(cause, ErrLeaseLost) {
		t.Fatalf("cause %v, want ErrLeaseLost", cause)
	}
}

// TestLeaseLostWhenTaken: a holder whose key now names another holder
// (its lease ran out in Redis) learns at its next renewal.
func TestLeaseLostWhenTaken(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = 3 * time.Second
	a := open(t, srv, lease)
	rk := resource("/items/1")
	held := mustLock(t, a, rk)
	testutil.Must(t, raw(t, srv).Set(context.Background(), a.keys(rk).lock, "someone else", lease).Err())
	select {
	case <-held.Context().Done():
	case <-time.After(2 * lease):
		t.Fatal("the lost lease was not noticed within two leases")
	}
	if err := held.Check(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Check = %v, want ErrLeaseLost", err)
	}
	_ = held.Unlock()
	if v := raw(t, srv).Get(context.Background(), a.keys(rk).lock).Val(); v != "someone else" {
		t.Fatalf("Unlock of a lost lease touched the new holder's key: %q", v)
	}
}

// TestDeadHolderBlocksAtMostOneLease: a replica that goes away holding a
// lock (no release) blocks the others for at most its lease.
func TestDeadHolderBlocksAtMostOneLease(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = 2 * time.Second
	a, b := open(t, srv, lease), open(t, srv, lease)
	rk := resource("/items/1")
	mustLock(t, a, rk)
	taken := time.Now()
	_ = a.Close() // stops renewal without releasing, as a crash would
	l := mustLock(t, b, rk)
	defer l.Unlock()
	if d := time.Since(taken); d > lease+time.Second {
		t.Fatalf("the other replica waited %s for a dead holder's lock, more than the lease %s", d, lease)
	}
}

// TestLockWhileRedisDown: without Redis, Lock fails at once with
// ErrUnavailable; once Redis is back (empty), no lock is granted for one
// lease, then locks work again.
func TestLockWhileRedisDown(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = time.Second
	a := open(t, srv, lease)
	rk := resource("/items/1")
	mustLock(t, a, rk).Unlock()

	srv.Kill()
	start := time.Now()
	if _, err := a.Lock(within(t, 10*time.Second), rk); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lock with Redis down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Lock took %s to fail with Redis down", d)
	}

	srv.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), lease/10)
	defer cancel()
	if _, err := a.Lock(ctx, rk); !errors.Is(err, ErrRecovering) && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lock right after Redis restarted empty = %v, want ErrRecovering", err)
	}
	start = time.Now()
	l := mustLock(t, a, rk)
	defer l.Unlock()
	if d := time.Since(start); d > lease+5*time.Second {
		t.Fatalf("the first lock after the restart took %s, for a hold of one lease (%s)", d, lease)
	}
}

// TestBootHoldCoversForgottenLeases: when Redis restarts empty while a
// replica holds a lock, another replica gets the lock only after the first
// has given its lease up.
func TestBootHoldCoversForgottenLeases(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	const lease = 2 * time.Second
	a, b := open(t, srv, lease), open(t, srv, lease)
	rk := resource("/items/1")
	held := mustLock(t, a, rk)
	mustLock(t, b, resource("/other")).Unlock() // b knows the dataset
	srv.Restart()
	restarted := time.Now()

	l := mustLock(t, b, rk)
	defer l.Unlock()
	select {
	case <-held.Context().Done():
	default:
		t.Fatal("another replica got the lock while the first still held its forgotten lease")
	}
	if err := held.Check(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the forgotten holder's Check = %v, want ErrLeaseLost", err)
	}
	t.Logf("lock granted again %s after the restart", time.Since(restarted))
}
