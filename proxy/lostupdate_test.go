package proxy

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counterServer is an upstream that knows nothing of preconditions: GET
// returns a number, PUT stores whatever number it is sent. Both pause
// between touching the state and answering, as a store doing I/O would,
// which widens the window in which concurrent read-modify-writes collide.
type counterServer struct {
	pause time.Duration
	mu    sync.Mutex
	n     int
	puts  atomic.Int64
}

func (c *counterServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		c.mu.Lock()
		n := c.n
		c.mu.Unlock()
		time.Sleep(c.pause)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d\n", n)
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			http.Error(w, "not a number", http.StatusBadRequest)
			return
		}
		time.Sleep(c.pause)
		c.mu.Lock()
		c.n = n
		c.mu.Unlock()
		c.puts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (c *counterServer) value() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// incrementLoad has clients each make perIncrements successful
// read-modify-write increments of url: GET, add one, PUT with If-Match,
// and on 412 start over after a short random pause. It returns how many
// increments succeeded and how many attempts were refused.
func incrementLoad(ctx context.Context, client *http.Client, url string, clients, per int) (succeeded, refused int64, err error) {
	var ok, conflicts atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for done := 0; done < per; {
				status, err := incrementOnce(ctx, client, url)
				if err != nil {
					errs <- err
					return
				}
				switch {
				case status >= 200 && status < 300:
					done++
					ok.Add(1)
				case status == http.StatusPreconditionFailed:
					conflicts.Add(1)
					time.Sleep(rand.N(2 * time.Millisecond))
				default:
					errs <- fmt.Errorf("PUT %s: unexpected status %d", url, status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return ok.Load(), conflicts.Load(), <-errs
}

func incrementOnce(ctx context.Context, client *http.Client, url string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %s", url, res.StatusCode, b)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("GET %s: %q: %w", url, b, err)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(strconv.Itoa(n+1)))
	if etag := res.Header.Get("ETag"); etag != "" {
		req.Header.Set("If-Match", etag)
	}
	res, err = client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// TestNoLostUpdates is the product's promise: many clients editing one
// resource through the gateway lose no update, although the upstream
// checks nothing. The same load sent straight to the upstream loses
// updates, which shows the test can fail.
func TestNoLostUpdates(t *testing.T) {
	const clients, per = 32, 2
	const want = clients * per
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("straight to the upstream", func(t *testing.T) {
		up := &counterServer{pause: 300 * time.Microsecond}
		srv := httptest.NewServer(up)
		defer srv.Close()
		ok, refused, err := incrementLoad(ctx, client, srv.URL+"/counter", clients, per)
		if err != nil {
			t.Fatal(err)
		}
		lost := int(ok) - up.value()
		t.Logf("%d increments succeeded, %d refused, counter %d: %d lost", ok, refused, up.value(), lost)
		if ok != want || lost <= 0 {
			t.Fatalf("want %d increments and some lost without the gateway, got %d and %d lost", want, ok, lost)
		}
	})

	for _, v := range []struct {
		name   string
		verify Verify
	}{{"verify upstream", VerifyUpstream}, {"verify cache", VerifyCache}} {
		t.Run(v.name, func(t *testing.T) {
			up := &counterServer{pause: 300 * time.Microsecond}
			upSrv := httptest.NewServer(up)
			defer upSrv.Close()
			u, _ := url.Parse(upSrv.URL)
			cfg := DefaultConfig()
			cfg.Verify = v.verify
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			gw := httptest.NewServer(m.Wrap(httputil.NewSingleHostReverseProxy(u)))
			defer gw.Close()

			start := time.Now()
			ok, refused, err := incrementLoad(ctx, client, gw.URL+"/counter", clients, per)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d increments succeeded, %d refused with 412, counter %d, %d PUTs reached the upstream, in %s",
				ok, refused, up.value(), up.puts.Load(), time.Since(start).Round(time.Millisecond))
			if ok != want || up.value() != want {
				t.Fatalf("%d increments succeeded but the counter is %d: %d lost", ok, up.value(), int(ok)-up.value())
			}
			if up.puts.Load() != want {
				t.Fatalf("%d PUTs reached the upstream, want exactly the %d that succeeded", up.puts.Load(), want)
			}
			if refused == 0 {
				t.Fatal("no attempt was refused: the clients did not contend, so the test proved nothing")
			}
			wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
		})
	}
}
