package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestGenerationAcrossReplicas walks a resource's generation through the
// cases a shared cache depends on, seen from two replicas.
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

	g0 := gen(a)
	if g0 == 0 || gen(b) != g0 || gen(a) != g0 {
		t.Fatalf("replicas disagree on an untouched resource's generation")
	}

	// A write that was refused (412) leaves the generation as it was.
	l := mustLock(t, a, rk)
	if l.Generation() != g0 {
		t.Fatalf("the holder sees generation %d, want %d from before the lock", l.Generation(), g0)
	}
	if _, err := b.Generation(ctx, rk); !errors.Is(err, ErrLocked) {
		t.Fatalf("Generation while locked = %v, want ErrLocked", err)
	}
	_ = l.Unlock()
	if gen(b) != g0 {
		t.Fatal("a lock that wrote nothing changed the generation")
	}

	// A write seen through the other replica.
	l = mustLock(t, b, rk)
	l.Invalidate()
	g1 := l.Generation()
	_ = l.Unlock()
	if g1 == g0 || gen(a) != g1 {
		t.Fatalf("after a write through b, a sees %d; want the writer's new generation %d (old %d)", gen(a), g1, g0)
	}

	// A write without the lock, seen by the other replica at once; one
	// during a locked write voids what the holder would leave.
	testutil.Must(t, a.Invalidate(ctx, rk))
	g2 := gen(b)
	if g2 == g1 {
		t.Fatal("an unlocked write's invalidation was not seen by the other replica")
	}
	l = mustLock(t, a, rk)
	l.Invalidate()
	testutil.Must(t, b.Invalidate(ctx, rk))
	_ = l.Unlock()
	if g := gen(b); g == l.Generation() || g == g2 {
		t.Fatalf("after an unlocked write during a locked one, the generation is %d, one the holder's cache may carry", g)
	}
	g1 = gen(a)

	// A holder that dies mid-write: the generation from before it is void.
	l = mustLock(t, a, rk)
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
	if _, err := a.Generation(context.Background(), rk); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Generation with Redis down = %v, want ErrUnavailable", err)
	}
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
