package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
	"github.com/etaggate/etaggate/proxy"
)

// host is the name clients use for the service, whichever replica serves
// them: it is part of the default resource key.
const host = "api.example"

// replica is an etag engine of its own (lock table, cache) on a real
// socket in front of upstream, coordinated through c (nil: alone), with
// verify cache and revalidate cache unless checkUpstream.
func replica(t *testing.T, upstream string, c *Client, checkUpstream bool) string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	if !checkUpstream {
		cfg.Verify = proxy.VerifyCache
		cfg.Revalidate = proxy.RevalidateCache
	}
	if c != nil {
		cfg.Cluster = Engine{c}
	}
	m, err := proxy.New(cfg)
	testutil.Must(t, err)
	t.Cleanup(m.Close)
	u, err := url.Parse(upstream)
	testutil.Must(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.ServeHTTP(w, r, reverseProxy(u)); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// reverseProxy is the rest of the route as Caddy's reverse_proxy is: a
// failure is returned to the handler in front, not written.
func reverseProxy(u *url.URL) proxy.Handler {
	return proxy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var failed error
		rp := &httputil.ReverseProxy{
			Rewrite:      func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
			ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) { failed = err },
		}
		rp.ServeHTTP(w, r)
		return failed
	})
}

// answer is what a request got.
type answer struct {
	status int
	header http.Header
	body   string
}

// do sends method to base+"/counter" as the public host, with the given
// "Name: value" header lines.
func do(t *testing.T, method, base, body string, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(within(t, time.Minute), method, base+"/counter", rd)
	testutil.Must(t, err)
	req.Host = host
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	testutil.Must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	testutil.Must(t, err)
	return answer{res.StatusCode, res.Header, strings.TrimSpace(string(b))}
}

func (a answer) is(t *testing.T, status int, what string) answer {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, a.status, status, a.body)
	}
	return a
}

// TestEngineCacheSharedAcrossReplicas: with verify cache and revalidate
// cache, a write through one replica is seen by the next check and the
// next revalidation through the other, while unchanged resources are
// still answered from each replica's cache. Without the cluster the other
// replica answers from its stale entry, which shows the test can fail.
func TestEngineCacheSharedAcrossReplicas(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	for _, clustered := range []bool{true, false} {
		t.Run(fmt.Sprintf("cluster %v", clustered), func(t *testing.T) {
			up := testutil.StartCounterStore(t, 0)
			var ca, cb *Client
			if clustered {
				ca, cb = open(t, srv, 5*time.Second), open(t, srv, 5*time.Second)
				raw(t, srv).FlushDB(context.Background()) // a fresh resource for each run
				markRunning(t, srv)
			}
			a, b := replica(t, up.URL, ca, false), replica(t, up.URL, cb, false)
			e0 := do(t, "GET", a, "").is(t, 200, "GET through a").header.Get("ETag")
			do(t, "GET", b, "").is(t, 200, "GET through b")

			gets := up.Gets()
			do(t, "PUT", b, "1", "If-Match: "+e0).is(t, 204, "PUT through b with the current ETag")
			if n := up.Gets() - gets; n != 1 {
				t.Fatalf("the write through b made %d upstream GETs; want only the read after it, the check coming from b's cache", n)
			}

			if clustered {
				// b's lock message reaches a's mirror a moment after the
				// lock (README, "Shared cache state": the one window);
				// without the message a would answer 304 however long it
				// waited.
				time.Sleep(50 * time.Millisecond)
			}
			stale := do(t, "GET", a, "", "If-None-Match: "+e0)
			if !clustered {
				if stale.status != http.StatusNotModified {
					t.Fatalf("without the cluster, a answered %d: the control did not reproduce the stale entry", stale.status)
				}
				return
			}
			stale.is(t, 200, "a's revalidation of the ETag from before b's write")
			e1 := stale.header.Get("ETag")
			if stale.body != "1" || e1 == e0 {
				t.Fatalf("a served %q %s after b wrote 1", stale.body, e1)
			}
			do(t, "PUT", a, "5", "If-Match: "+e0).is(t, 412, "PUT through a with the ETag from before b's write")

			gets = up.Gets()
			do(t, "GET", a, "", "If-None-Match: "+e1).is(t, 304, "a's revalidation of the current ETag")
			do(t, "PUT", a, "2", "If-Match: "+e1).is(t, 204, "PUT through a with the current ETag")
			if n := up.Gets() - gets; n != 1 {
				t.Fatalf("a's revalidation and write made %d upstream GETs; want only the read after the write", n)
			}
			if up.Value() != 2 {
				t.Fatalf("the store holds %d, want 2", up.Value())
			}
		})
	}
}

// TestEngineRedisDown: without Redis, a write answers 503 with
// Retry-After and is not forwarded, while reads are answered and tagged;
// once Redis is back (empty), writes resume after the hold.
func TestEngineRedisDown(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	up := testutil.StartCounterStore(t, 0)
	a := replica(t, up.URL, open(t, srv, time.Second), false)
	etag := do(t, "GET", a, "").is(t, 200, "GET").header.Get("ETag")

	srv.Kill()
	res := do(t, "PUT", a, "1", "If-Match: "+etag).is(t, 503, "PUT with Redis down")
	if res.header.Get("Retry-After") == "" || !strings.Contains(res.header.Get("Content-Type"), "problem+json") {
		t.Fatalf("503 without Retry-After or problem body: %v %s", res.header, res.body)
	}
	if up.Puts() != 0 {
		t.Fatal("a write was forwarded without the lock")
	}
	got := do(t, "GET", a, "").is(t, 200, "GET with Redis down")
	if got.header.Get("ETag") != etag {
		t.Fatalf("GET with Redis down tagged %q, want %q", got.header.Get("ETag"), etag)
	}
	do(t, "GET", a, "", "If-None-Match: "+etag).is(t, 304, "revalidation with Redis down")

	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := do(t, "PUT", a, "1", "If-Match: "+etag)
		if res.status == 204 {
			break
		}
		if res.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d %s", res.status, res.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if up.Value() != 1 {
		t.Fatalf("store holds %d after the write resumed", up.Value())
	}
}

// TestEngineLeaseLostBeforeForwarding: a write whose lease runs out while
// its check is under way (Redis stopped answering) is not forwarded: the
// check is cancelled and the client gets 503.
func TestEngineLeaseLostBeforeForwarding(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	up := testutil.StartCounterStore(t, 0)
	a := replica(t, up.URL, open(t, srv, time.Second), true)
	etag := do(t, "GET", a, "").is(t, 200, "GET").header.Get("ETag")

	gate := up.Gate("check")
	done := make(chan answer, 1)
	go func() { done <- do(t, "PUT", a, "1", "If-Match: "+etag, "X-Hold-GET: check") }()
	<-gate.Arrived // the check GET is at the store, under the lock
	srv.Pause()
	defer srv.Resume()
	select {
	case <-gate.Cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the check was not cancelled when the lease ran out")
	}
	res := <-done
	res.is(t, 503, "PUT whose lease ran out during its check")
	if up.Puts() != 0 {
		t.Fatal("the write was forwarded after its lease ran out")
	}
}

// TestEngineLeaseLostCancelsUpstream: a write whose lease runs out while
// the upstream has it is cancelled there; the client gets 503 saying the
// write may or may not have been applied.
func TestEngineLeaseLostCancelsUpstream(t *testing.T) {
	srv := testutil.StartRedis(t)
	markRunning(t, srv)
	up := testutil.StartCounterStore(t, 0)
	a := replica(t, up.URL, open(t, srv, time.Second), true)
	etag := do(t, "GET", a, "").is(t, 200, "GET").header.Get("ETag")

	gate := up.Gate("put")
	done := make(chan answer, 1)
	go func() { done <- do(t, "PUT", a, "1", "If-Match: "+etag, "X-Hold-PUT: put") }()
	<-gate.Arrived
	held := time.Now()
	srv.Pause()
	defer srv.Resume()
	select {
	case <-gate.Cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled when the lease ran out")
	}
	if d := time.Since(held); d > time.Second {
		t.Fatalf("the upstream request was cancelled %s after Redis stopped, later than the lease", d)
	}
	res := <-done
	res.is(t, 503, "PUT whose lease ran out at the upstream")
	if !strings.Contains(res.body, "may or may not") {
		t.Fatalf("the 503 does not say the write may have been applied: %s", res.body)
	}
	if up.Puts() != 0 {
		t.Fatal("the careful store committed a cancelled write")
	}
}
