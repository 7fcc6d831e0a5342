package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zeebo/xxh3"
	"go.uber.org/zap/zaptest"

	"github.com/etaggate/etaggate/internal/testutil"
)

// open connects a client (a replica) to srv, closed when the test ends.
func open(t *testing.T, srv *testutil.Redis, lease time.Duration) *Client {
	t.Helper()
	c, err := Open(Options{Address: srv.Addr, Lease: lease, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// raw is a plain connection for the test to look at and tamper with keys.
func raw(t *testing.T, srv *testutil.Redis) *redis.Client {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// redisFor marks srv as a running cluster's Redis, for benchmarks.
func redisFor(b *testing.B, srv *testutil.Redis) *redis.Client {
	b.Helper()
	r := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { _ = r.Close() })
	if err := r.Set(context.Background(), DefaultPrefix+"{boot}:id", "bench", 0).Err(); err != nil {
		b.Fatal(err)
	}
	return r
}

// markRunning gives a fresh Redis the marker a running cluster leaves, so
// that a test about something else does not wait out the boot hold.
func markRunning(t *testing.T, srv *testutil.Redis) {
	t.Helper()
	if err := raw(t, srv).Set(context.Background(), DefaultPrefix+"{boot}:id", "test", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func resource(name string) xxh3.Uint128 { return xxh3.HashString128(name) }

func within(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustLock(t *testing.T, c *Client, rk xxh3.Uint128) *Lease {
	t.Helper()
	l, err := c.Lock(within(t, 30*time.Second), rk)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	return l
}
