package cluster

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// BenchmarkLockUnlock is the cost the cluster adds to one uncontended
// write: take the lock and release it, each goroutine on a resource of its
// own. Besides time, it reports the CPU both sides spend per write: this
// process's (client-cpu/op) and redis-server's (redis-cpu/op).
func BenchmarkLockUnlock(b *testing.B) {
	var next atomic.Int64
	benchRedis(b, func(c *Client) func() error {
		rk := resource(fmt.Sprintf("/bench/%d", next.Add(1)))
		return func() error {
			l, err := c.Lock(b.Context(), rk)
			if err != nil {
				return err
			}
			return l.Unlock()
		}
	})
}

// BenchmarkRoundTrip is the floor BenchmarkLockUnlock compares with: one
// PING per operation through the client's pool, with the same
// concurrency, and what it costs both sides.
func BenchmarkRoundTrip(b *testing.B) {
	benchRedis(b, func(c *Client) func() error {
		return func() error { return c.rdb.Ping(b.Context()).Err() }
	})
}

// benchRedis runs the operations that worker makes for each goroutine, 32
// goroutines on 2 cores as in the bench's rows, on a client of a Redis of
// its own, and reports the CPU each side spends per operation.
func benchRedis(b *testing.B, worker func(*Client) func() error) {
	srv := testutil.StartRedis(b)
	redisFor(b, srv)
	c, err := Open(Options{Address: srv.Addr, Lease: 15 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	self0, redis0 := processCPU(b, os.Getpid()), processCPU(b, srv.PID())
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		op := worker(c)
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(processCPU(b, os.Getpid())-self0)/n, "client-cpu-ns/op")
	b.ReportMetric(float64(processCPU(b, srv.PID())-redis0)/n, "redis-cpu-ns/op")
}

// processCPU is the user and system time process pid has used, from
// /proc/<pid>/stat in clock ticks (10ms).
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
