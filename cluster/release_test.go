package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etaggate/etaggate/internal/testutil"
)

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

func lockHeld(t *testing.T, r *redis.Client, c *Client, name string) bool {
	t.Helper()
	n, err := r.Exists(context.Background(), c.keys(resource(name)).lock).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// A release rides with the next lock this process takes: the two cost one
// round trip, and the lock released first is free when the next is taken.
func TestReleaseTravelsWithTheNextLock(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	c := open(t, srv, 15*time.Second)
	r := raw(t, srv)
	a := mustLock(t, c, resource("/a"))
	c.releaseAfter = time.Hour // only a round trip takes the release
	rt := new(roundTrips)
	c.rdb.AddHook(rt)
	if err := a.Unlock(); err != nil {
		t.Fatal(err)
	}
	if !lockHeld(t, r, c, "/a") {
		t.Fatal("the release went alone; the test shows nothing")
	}
	b := mustLock(t, c, resource("/b"))
	defer b.Unlock()
	if lockHeld(t, r, c, "/a") {
		t.Error("the first lock is still held after the next was taken")
	}
	if n := rt.n.Load(); n != 1 {
		t.Errorf("%d round trips for one release and one lock, want 1", n)
	}
}

// With no other round trip to ride, a release goes alone at once, and
// wakes a waiter of another replica.
func TestReleaseGoesAlone(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	c1 := open(t, srv, 15*time.Second)
	c2 := open(t, srv, 15*time.Second)
	rk := resource("/alone")
	l := mustLock(t, c1, rk)
	got := make(chan error, 1)
	go func() {
		l2, err := c2.Lock(within(t, 10*time.Second), rk)
		if err == nil {
			err = l2.Unlock()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // the waiter marks the resource wanted
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Well within the lease: the waiter was woken by the release.
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the waiting replica: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting replica did not get the lock within 5s of the release (lease 15s)")
	}
}

// Close sends the releases still pending: no replica waits out their
// leases because this one stopped.
func TestCloseSendsPendingReleases(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	c, err := Open(Options{Address: srv.Addr, Lease: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := raw(t, srv)
	l := mustLock(t, c, resource("/closing"))
	c.releaseAfter = time.Hour // no release before Close
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if !lockHeld(t, r, c, "/closing") {
		t.Fatal("the release went before Close; the test shows nothing")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if lockHeld(t, r, c, "/closing") {
		t.Error("the lock is still held after Close")
	}
}

// A release that cannot reach Redis is logged and sent again while its
// lease runs.
func TestReleaseRetriedAfterFailure(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	core, logs := observer.New(zap.WarnLevel)
	c, err := Open(Options{Address: srv.Addr, Lease: 15 * time.Second, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := raw(t, srv)
	l := mustLock(t, c, resource("/retried"))
	srv.Pause()
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// The release's read times out (3s) while Redis hangs.
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("releasing write locks failed").Len() == 0 {
		if time.Now().After(deadline) {
			srv.Resume()
			t.Fatal("no failed release was logged within 10s of a hung Redis")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Resume()
	for lockHeld(t, r, c, "/retried") {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the lock is still held: the failed release was not sent again")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Writers of two replicas on one resource take turns: a release hands the
// lock to the other replica's waiter, so a busy replica does not keep the
// lock to itself.
func TestContendedLockChangesReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	replicas := []*Client{open(t, srv, 15*time.Second), open(t, srv, 15*time.Second)}
	rk := resource("/contended")
	var locals [2]sync.Mutex
	var got [2]atomic.Int64
	var last atomic.Int32
	var cross atomic.Int64 // locks taken from the other replica's holder
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := range 8 {
		i := w % 2
		wg.Go(func() {
			for time.Now().Before(stop) {
				locals[i].Lock() // the proxy's local lock, taken first
				l, err := replicas[i].Lock(within(t, 10*time.Second), rk)
				if err != nil {
					locals[i].Unlock()
					t.Error(err)
					return
				}
				got[i].Add(1)
				if last.Swap(int32(i)) != int32(i) {
					cross.Add(1)
				}
				time.Sleep(100 * time.Microsecond) // the write
				_ = l.Unlock()
				locals[i].Unlock()
			}
		})
	}
	wg.Wait()
	a, b, n := got[0].Load(), got[1].Load(), cross.Load()
	t.Logf("locks taken: replica 0 %d, replica 1 %d; %d from the other replica", a, b, n)
	if n*2 < a+b {
		t.Errorf("%d of %d locks changed replicas: a busy replica kept the lock to itself", n, a+b)
	}
}

// After Redis forgets its scripts (SCRIPT FLUSH, as a restart does), a
// lock, the release it carries and a read load them again and succeed.
func TestScriptsLoadedAgain(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	c := open(t, srv, 15*time.Second)
	r := raw(t, srv)
	c.releaseAfter = time.Hour // the release rides with the next lock
	if err := mustLock(t, c, resource("/a")).Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := r.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	b := mustLock(t, c, resource("/b"))
	if lockHeld(t, r, c, "/a") {
		t.Error("the carried release did not run after the scripts were flushed")
	}
	_ = b.Unlock()
	if err := r.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Generation(within(t, 5*time.Second), resource("/c")); err != nil {
		t.Errorf("Generation after SCRIPT FLUSH: %v", err)
	}
	if lockHeld(t, r, c, "/b") {
		t.Error("the release carried by the read did not run")
	}
}

// A release hands the lock to the waiter that marked it wanted; one that
// is gone by then (a crashed replica) blocks the others for handoffFor,
// not a lease.
func TestLockHandedToGoneWaiterExpires(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	c := open(t, srv, 20*time.Second)
	r := raw(t, srv)
	rk := resource("/handed")
	k := c.keys(rk)
	l := mustLock(t, c, rk)
	testutil.Must(t, r.Set(context.Background(), k.wanted, "gone/waiter", 20*time.Second).Err())
	c.releaseAfter = 0
	released := time.Now()
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for v := r.Get(context.Background(), k.lock).Val(); v != "~gone/waiter"; v = r.Get(context.Background(), k.lock).Val() {
		if time.Now().After(deadline) {
			t.Fatalf("after the release the lock holds %q, want it handed to the waiter", v)
		}
		time.Sleep(time.Millisecond)
	}
	if ttl := r.PTTL(context.Background(), k.lock).Val(); ttl <= 0 || ttl > handoffFor {
		t.Fatalf("the handed lock expires in %s, want at most %s", ttl, handoffFor)
	}
	l = mustLock(t, c, rk)
	defer l.Unlock()
	if d := time.Since(released); d < handoffFor/2 || d > handoffFor+2*time.Second {
		t.Errorf("the next writer got the lock %s after a release handed it to a gone waiter; want about %s", d, handoffFor)
	}
}

// A waiter that gives up gives back the lock a release may have handed
// it, and takes back its mark, so that the next release does not hand the
// lock to it.
func TestWaiterThatGaveUpLeavesNoHandOff(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	a, b := open(t, srv, 20*time.Second), open(t, srv, 20*time.Second)
	r := raw(t, srv)
	rk := resource("/gave-up")
	k := a.keys(rk)

	// Its mark, while the lock is held by another.
	held := mustLock(t, a, rk)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(ctx, rk); err == nil {
		t.Fatal("Lock succeeded while the lock was held")
	}
	b.flush(context.Background())
	if v := r.Get(context.Background(), k.wanted).Val(); v != "" {
		t.Errorf("the waiter that gave up left its mark %q", v)
	}
	a.releaseAfter = 0
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); lockHeld(t, r, a, "/gave-up"); {
		if time.Now().After(deadline) {
			t.Fatalf("the lock is still %q after its release", r.Get(context.Background(), k.lock).Val())
		}
		time.Sleep(time.Millisecond)
	}

	// A lock handed to it after it gave up.
	token := b.newLockToken()
	testutil.Must(t, r.Set(context.Background(), k.lock, "~"+token, handoffFor).Err())
	b.abandon(k, token)
	b.flush(context.Background())
	if lockHeld(t, r, b, "/gave-up") {
		t.Errorf("the lock handed to a waiter that gave up is still %q", r.Get(context.Background(), k.lock).Val())
	}
}
