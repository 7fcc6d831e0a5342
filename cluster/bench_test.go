package cluster

import (
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// BenchmarkLockUnlock is the cost the cluster adds to one uncontended
// write: take the lock (one round trip) and release it (one more).
func BenchmarkLockUnlock(b *testing.B) {
	srv := testutil.StartRedis(b)
	r := redisFor(b, srv)
	_ = r
	c, err := Open(Options{Address: srv.Addr, Lease: 15 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := b.Context()
	rk := resource("/bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := c.Lock(ctx, rk)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Unlock(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
