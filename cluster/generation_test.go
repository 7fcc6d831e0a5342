package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestGenerationAcrossReplicas walks a resource's generation through the
// cases a shared cache depends on, seen from two replicas. What one
// replica does reaches the other's mirror by a message, so the other's
// view is awaited; the writer's own view changes at once.
func TestGenerationAcrossReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	a, b := open(t, srv, 5*time.Second), open(t, srv, 5*time.Second)
	ctx := context.Background()
	rk := resource("/items/1")
	gen := func(c *Client) uint64 {
		t.Helper()
		g, err := c.Generation(ctx, rk)
		if err != nil {
			t.Fatalf("Generation: %v", err)
		}
		return g
	}
	becomes := func(c *Client, what string, want func(uint64, error) bool) {
		t.Helper()
		testutil.Eventually(t, what, func() bool { return want(c.Generation(ctx, rk)) })
	}
	locked := func(_ uint64, err error) bool { return errors.Is(err, ErrLocked) }
	is := func(g uint64) func(uint64, error) bool {
		return func(got uint64, err error) bool { return err == nil && got == g }
	}

	g0 := gen(a)
	if g0 == 0 || gen(b) != g0 || gen(a) != g0 {
		t.Fatalf("replicas disagree on an untouched resource's generation")
	}

	// A write that was refused (412) leaves the generation as it was.
	l := mustLock(t, a, rk)
	if l.Generation() != g0 {
		t.Fatalf("the holder sees generation %d, want %d from before the lock", l.Generation(), g0)
	}
	if _, err := a.Generation(ctx, rk); !errors.Is(err, ErrLocked) {
		t.Fatalf("Generation in the holder's process while locked = %v, want ErrLocked at once", err)
	}
	becomes(b, "the other replica sees the resource locked", locked)
	_ = l.Unlock()
	becomes(b, "the other replica sees the lock released", func(g uint64, err error) bool { return err == nil })
	if gen(b) != g0 || gen(a) != g0 {
		t.Fatal("a lock that wrote nothing changed the generation")
	}

	// A write seen through the other replica.
	l = mustLock(t, b, rk)
	l.Invalidate()
	g1 := l.Generation()
	_ = l.Unlock()
	if g1 == g0 || gen(b) != g1 {
		t.Fatalf("after its write, b sees %d; want its new generation %d (old %d)", gen(b), g1, g0)
	}
	becomes(a, "a sees the writer's new generation", is(g1))

	// A write without the lock, seen by the other replica at once; one
	// during a locked write voids what the holder would leave.
	testutil.Must(t, a.Invalidate(ctx, rk))
	g2 := gen(a)
	if g2 == g1 {
		t.Fatal("an unlocked write's invalidation did not change the generation")
	}
	becomes(b, "b sees an unlocked write's invalidation", is(g2))
	l = mustLock(t, a, rk)
	l.Invalidate()
	testutil.Must(t, b.Invalidate(ctx, rk))
	_ = l.Unlock()
	becomes(b, "b sees the lock released", func(g uint64, err error) bool { return err == nil })
	if g := gen(b); g == l.Generation() || g == g2 {
		t.Fatalf("after an unlocked write during a locked one, the generation is %d, one the holder's cache may carry", g)
	}
	g1 = gen(a)
	becomes(b, "the replicas agree", is(g1))

	// A holder that dies mid-write: the generation from before it is void.
	l = mustLock(t, a, rk)
	becomes(b, "b sees the resource locked", locked)
	_ = a.Close()
	testutil.Eventually(t, "the dead holder's lease runs out", func() bool {
		_, err := b.Generation(ctx, rk)
		return !errors.Is(err, ErrLocked)
	})
	if g := gen(b); g == g1 || g == l.Generation() {
		t.Fatalf("after a holder died, the generation is %d, one a cache entry may carry", g)
	}
}

// TestGenerationAfterDataLoss: a Redis that restarts empty gives new
// generations, never one an entry from before may carry.
func TestGenerationAfterDataLoss(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := open(t, srv, time.Second)
	rk := resource("/items/1")
	g0, err := a.Generation(context.Background(), rk)
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	testutil.Eventually(t, "Generation with Redis down answers ErrUnavailable", func() bool {
		_, err := a.Generation(context.Background(), rk)
		return errors.Is(err, ErrUnavailable)
	})
	srv.Restart()
	time.Sleep(1100 * time.Millisecond) // past the moment reads skip a failed Redis
	g1, err := a.Generation(context.Background(), rk)
	if err != nil {
		t.Fatal(err)
	}
	if g1 == g0 {
		t.Fatal("the generation survived the loss of Redis's data")
	}
}
