package cluster

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// scriptCalls counts the scripts Redis has run, all clients together.
func scriptCalls(t *testing.T, srv *testutil.Redis) int {
	t.Helper()
	info, err := raw(t, srv).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`cmdstat_eval(?:sha)?:calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// liveReplicas starts a Redis and two replicas on it, once a's mirror is
// live.
func liveReplicas(t *testing.T) (srv *testutil.Redis, a, b *Client) {
	t.Helper()
	srv = testutil.StartRedis(t)
	markRunning(t, srv)
	a, b = open(t, srv, 5*time.Second), open(t, srv, 5*time.Second)
	testutil.Eventually(t, "a's mirror is live", a.mirror.live.Load)
	return srv, a, b
}

// TestMirrorSavesRoundTrips: once a replica has read a resource's
// generation, reading it again costs no round trip until a write through
// any replica changes it; then the new one is read once.
func TestMirrorSavesRoundTrips(t *testing.T) {
	srv, a, b := liveReplicas(t)
	ctx := context.Background()
	rk := resource("/items/1")

	g0, err := a.Generation(ctx, rk)
	testutil.Must(t, err)
	before := scriptCalls(t, srv)
	for range 100 {
		if g, err := a.Generation(ctx, rk); err != nil || g != g0 {
			t.Fatalf("Generation = %d, %v; want %d", g, err, g0)
		}
	}
	if n := scriptCalls(t, srv) - before; n != 0 {
		t.Fatalf("100 reads of an unchanged generation ran %d scripts in Redis, want 0", n)
	}

	l := mustLock(t, b, rk)
	l.Invalidate()
	g1 := l.Generation()
	testutil.Must(t, l.Unlock())
	testutil.Eventually(t, "a sees b's write", func() bool {
		g, err := a.Generation(ctx, rk)
		return err == nil && g == g1
	})
	before = scriptCalls(t, srv)
	for range 100 {
		if g, _ := a.Generation(ctx, rk); g != g1 {
			t.Fatalf("Generation = %d after b's write, want %d", g, g1)
		}
	}
	if n := scriptCalls(t, srv) - before; n != 0 {
		t.Fatalf("after the new generation was read, 100 more reads ran %d scripts, want 0", n)
	}
}

// TestMirrorEmptiedOnReconnect: a change that was never heard (here made
// behind the scripts' back, as one lost with a connection would be) does
// not survive the subscription's reconnection.
func TestMirrorEmptiedOnReconnect(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	a := open(t, srv, 5*time.Second)
	ctx := context.Background()
	rk := resource("/items/1")
	testutil.Eventually(t, "a's mirror is live", a.mirror.live.Load)
	g0, err := a.Generation(ctx, rk)
	testutil.Must(t, err)

	r := raw(t, srv)
	testutil.Must(t, r.Set(ctx, a.keys(rk).gen, "12345", 0).Err()) // unpublished
	if g, _ := a.Generation(ctx, rk); g != g0 {
		t.Fatalf("the mirror answered %d; the control needs it to still answer %d", g, g0)
	}
	testutil.Must(t, r.ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	testutil.Eventually(t, "the reconnected replica reads the generation Redis has", func() bool {
		g, err := a.Generation(ctx, rk)
		return err == nil && g == 12345
	})
}

// TestMirrorSilence: a Redis that stops answering without closing the
// connection (a partition, here SIGSTOP) stops the mirror within about a
// second: reads then go without the shared cache rather than trust what
// may have changed unheard.
func TestMirrorSilence(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	a := open(t, srv, 5*time.Second)
	ctx := context.Background()
	rk := resource("/items/1")
	testutil.Eventually(t, "a's mirror is live", a.mirror.live.Load)
	g0, err := a.Generation(ctx, rk)
	testutil.Must(t, err)

	srv.Pause()
	paused := time.Now()
	testutil.Eventually(t, "the mirror stops answering", func() bool {
		_, err := a.Generation(ctx, rk)
		return errors.Is(err, ErrUnavailable)
	})
	if d := time.Since(paused); d > 5*time.Second {
		t.Fatalf("the mirror answered for %s after Redis went silent", d)
	}
	srv.Resume()
	testutil.Eventually(t, "reads use Redis again", func() bool {
		g, err := a.Generation(ctx, rk)
		return err == nil && g == g0
	})
}

// TestMirrorKeepsWhatTheHolderLeft: the writer's next read of the
// resource needs no round trip, and another replica's lock still reaches
// the writer's mirror.
func TestMirrorKeepsWhatTheHolderLeft(t *testing.T) {
	srv, a, b := liveReplicas(t)
	ctx := context.Background()
	rk := resource("/items/1")

	l := mustLock(t, a, rk)
	l.Invalidate()
	g1 := l.Generation()
	// A write in flight, long enough for a's own lock message to come
	// back first, as it does behind an upstream's round trip.
	time.Sleep(100 * time.Millisecond)
	testutil.Must(t, l.Unlock())
	// The release lands first: its timer would otherwise run during the count.
	r := raw(t, srv)
	testutil.Eventually(t, "the release lands", func() bool { return !lockHeld(t, r, a, "/items/1") })
	before := scriptCalls(t, srv)
	if g, err := a.Generation(ctx, rk); err != nil || g != g1 {
		t.Fatalf("the writer reads %d, %v after its write; want the generation it left, %d", g, err, g1)
	}
	if n := scriptCalls(t, srv) - before; n != 0 {
		t.Fatalf("the writer's read after its write ran %d scripts, want 0", n)
	}

	l = mustLock(t, b, rk)
	testutil.Eventually(t, "a hears b's lock", func() bool {
		_, err := a.Generation(ctx, rk)
		return errors.Is(err, ErrLocked)
	})
	_ = l.Unlock()
}
