package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// faultLease is the replicas' lease in the fault tests: short, so that
// waiting one out is quick.
const faultLease = 2 * time.Second

// increment makes one read-modify-write increment, reading through
// readURL and writing through writeURL, starting over after a 412 and,
// with tolerate503, after a 503. It returns the value written.
func increment(t *testing.T, c *http.Client, readURL, writeURL string, tolerate503 bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		n, etag, err := read(ctx, c, readURL)
		testutil.Must(t, err)
		res, err := write(ctx, c, writeURL, n+1, etag)
		testutil.Must(t, err)
		switch s := res.StatusCode; {
		case s >= 200 && s < 300:
			return n + 1
		case s == http.StatusPreconditionFailed, s == http.StatusServiceUnavailable && tolerate503:
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("PUT %s: %d", writeURL, s)
		}
	}
}

// clusterOf starts Redis, a store and two clustered replicas, and makes
// one write so that the boot hold of a fresh Redis is behind them.
func clusterOf(t *testing.T, etagOptions string) (*testutil.Redis, *testutil.CounterStore, []*testutil.Process) {
	t.Helper()
	redis := testutil.StartRedis(t)
	up := testutil.StartCounterStore(t, 0)
	replicas := startReplicas(t, 2, replicaConfig(redis.Addr, faultLease, up.URL, etagOptions))
	increment(t, httpClient(), replicas[0].URL+"/counter", replicas[1].URL+"/counter", true)
	return redis, up, replicas
}

// writeAsync sends a PUT of n with If-Match: etag and the header lines,
// and delivers its status (0 when the connection failed).
func writeAsync(c *http.Client, url string, n int, etag string, header ...string) <-chan int {
	done := make(chan int, 1)
	go func() {
		res, err := write(context.Background(), c, url, n, etag, header...)
		if err != nil {
			done <- 0
			return
		}
		done <- res.StatusCode
	}()
	return done
}

// TestReplicaKilledHoldingLock: a replica killed with kill -9 while it
// holds a resource's lock, its write at the upstream, blocks the other
// replica for at most one lease; the final state is the other replica's
// write, and both replicas' caches agree with it.
func TestReplicaKilledHoldingLock(t *testing.T) {
	_, up, rs := clusterOf(t, "verify cache")
	a, b := rs[0].URL+"/counter", rs[1].URL+"/counter"
	c := httpClient()
	n, etag, err := read(context.Background(), c, a)
	testutil.Must(t, err)

	gate := up.Gate("a")
	lost := writeAsync(c, a, 1000, etag, "X-Hold-PUT: a")
	<-gate.Arrived // a holds the lock, its PUT is at the store
	rs[0].Kill()
	killed := time.Now()
	if got := increment(t, c, b, b, false); got != n+1 {
		t.Fatalf("the other replica wrote %d, want %d", got, n+1)
	}
	waited := time.Since(killed)
	t.Logf("the other replica's write went through %s after the holder was killed (lease %s)", waited.Round(time.Millisecond), faultLease)
	if waited > faultLease+3*time.Second {
		t.Fatalf("the other replica waited %s for a dead holder's lock, more than the lease %s", waited, faultLease)
	}
	select {
	case <-gate.Cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed replica's upstream request was never cancelled")
	}
	if s := <-lost; s != 0 {
		t.Fatalf("the killed replica's client got %d, want a broken connection", s)
	}
	if up.Value() != n+1 || up.Puts() != int64(n+1) {
		t.Fatalf("store holds %d after %d PUTs, want %d", up.Value(), up.Puts(), n+1)
	}
	// The survivor's cache is current: the next increment checks against it.
	if got := increment(t, c, b, b, false); got != n+2 {
		t.Fatalf("the next write through the survivor wrote %d, want %d", got, n+2)
	}
}

// TestReplicaPausedDuringCheck: a replica stopped (SIGSTOP) while it
// checks a write, past its lease, while the other replica takes the lock
// and writes, does not forward its write when it resumes: it answers 503.
func TestReplicaPausedDuringCheck(t *testing.T) {
	_, up, rs := clusterOf(t, "")
	a, b := rs[0].URL+"/counter", rs[1].URL+"/counter"
	c := httpClient()
	n, etag, err := read(context.Background(), c, a)
	testutil.Must(t, err)

	gate := up.Gate("check")
	paused := writeAsync(c, a, 1000, etag, "X-Hold-GET: check")
	<-gate.Arrived // a holds the lock and checks
	rs[0].Pause()
	gate.Open() // the store answers the check into a's socket
	time.Sleep(faultLease + 500*time.Millisecond)
	if got := increment(t, c, b, b, false); got != n+1 {
		t.Fatalf("the other replica wrote %d, want %d", got, n+1)
	}
	rs[0].Resume()
	if s := <-paused; s != http.StatusServiceUnavailable {
		t.Fatalf("the replica paused past its lease answered %d, want 503", s)
	}
	if up.Value() != n+1 || up.Puts() != int64(n+1) {
		t.Fatalf("store holds %d after %d PUTs: the paused replica's write went through", up.Value(), up.Puts())
	}
}

// TestReplicaPausedDuringWrite: a replica stopped while the upstream has
// its write, past its lease, cancels that request when it resumes; the
// other replica's write, made meanwhile, stands.
func TestReplicaPausedDuringWrite(t *testing.T) {
	_, up, rs := clusterOf(t, "")
	a, b := rs[0].URL+"/counter", rs[1].URL+"/counter"
	c := httpClient()
	n, etag, err := read(context.Background(), c, a)
	testutil.Must(t, err)

	gate := up.Gate("write")
	paused := writeAsync(c, a, 1000, etag, "X-Hold-PUT: write")
	<-gate.Arrived
	rs[0].Pause()
	time.Sleep(faultLease + 500*time.Millisecond)
	if got := increment(t, c, b, b, false); got != n+1 {
		t.Fatalf("the other replica wrote %d, want %d", got, n+1)
	}
	rs[0].Resume()
	resumed := time.Now()
	select {
	case <-gate.Cancelled:
		t.Logf("the resumed replica cancelled its upstream request %s after resuming", time.Since(resumed).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the resumed replica did not cancel its upstream request")
	}
	if s := <-paused; s != http.StatusServiceUnavailable {
		t.Fatalf("the resumed replica answered %d, want 503", s)
	}
	if up.Value() != n+1 {
		t.Fatalf("store holds %d, want the other replica's %d", up.Value(), n+1)
	}
}

// TestReplicasRedisDown: with Redis killed, writes through either replica
// answer 503 with Retry-After and reach nothing, reads answer 200 with
// their ETag; once Redis is back, writes resume and lose nothing.
func TestReplicasRedisDown(t *testing.T) {
	redis, up, rs := clusterOf(t, "verify cache\nrevalidate cache")
	urls := urlsOf(rs, "/counter")
	c := httpClient()
	ctx := context.Background()
	n, etag, err := read(ctx, c, urls[0])
	testutil.Must(t, err)
	puts := up.Puts()

	redis.Kill()
	for _, u := range urls {
		res, err := write(ctx, c, u, n+1, etag)
		testutil.Must(t, err)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("PUT %s with Redis down: %d, Retry-After %q; want 503 with Retry-After", u, res.StatusCode, res.Header.Get("Retry-After"))
		}
		got, tag, err := read(ctx, c, u)
		testutil.Must(t, err)
		if got != n || tag != etag {
			t.Fatalf("GET %s with Redis down: %d %s, want %d %s", u, got, tag, n, etag)
		}
	}
	if up.Puts() != puts {
		t.Fatal("a write was forwarded without the lock")
	}

	redis.Restart()
	back := time.Now()
	increment(t, c, urls[0], urls[1], true)
	t.Logf("writes resumed %s after Redis came back empty (lease %s)", time.Since(back).Round(time.Millisecond), faultLease)
	ok, _, err := incrementLoad(ctx, c, urls, 8, 3)
	testutil.Must(t, err)
	if want := n + 1 + int(ok); up.Value() != want {
		t.Fatalf("store holds %d after the restart, want %d: updates lost", up.Value(), want)
	}
}
