package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// replicaConfig is one replica's Caddyfile: etag with etagOptions in front
// of upstream, coordinated through Redis at redisAddr ("" for none).
func replicaConfig(redisAddr string, lease time.Duration, upstream, etagOptions string) string {
	var b strings.Builder
	b.WriteString("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\tlevel WARN\n\t}\n")
	if redisAddr != "" {
		fmt.Fprintf(&b, "\tetaggate {\n\t\tredis %s {\n\t\t\tlease %s\n\t\t}\n\t}\n", redisAddr, lease)
	}
	b.WriteString("}\n\nhttp://:{port} {\n\tbind 127.0.0.1\n\tetag {\n")
	for line := range strings.SplitSeq(strings.TrimSpace(etagOptions), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("\t\t" + line + "\n")
		}
	}
	fmt.Fprintf(&b, "\t}\n\treverse_proxy %s\n}\n", upstream)
	return b.String()
}

// startReplicas runs n replicas of one configuration.
func startReplicas(t *testing.T, n int, cfg string) []*testutil.Process {
	t.Helper()
	ps := make([]*testutil.Process, n)
	for i := range ps {
		ps[i] = testutil.StartProcess(t, caddyBin, cfg)
	}
	return ps
}

// publicHost is the name clients use, whichever replica the load balancer
// sends them to: the default resource key includes it.
const publicHost = "api.example"

// read GETs url and returns the counter and its ETag.
func read(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Host = publicHost
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if res.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("GET %s: %d %s", url, res.StatusCode, b)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %q: %w", url, b, err)
	}
	return n, res.Header.Get("ETag"), nil
}

// write PUTs n to url with If-Match: etag and the extra header lines.
func write(ctx context.Context, c *http.Client, url string, n int, etag string, header ...string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(strconv.Itoa(n)))
	req.Host = publicHost
	if etag != "" {
		req.Header.Set("If-Match", etag)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, nil
}

// incrementLoad has clients each make per successful read-modify-write
// increments, reading through one replica and writing through the next,
// starting over after a 412. It returns the increments that succeeded and
// the attempts refused.
func incrementLoad(ctx context.Context, c *http.Client, urls []string, clients, per int) (ok, refused int64, err error) {
	var okN, refusedN atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for k, done := i, 0; done < per; k++ {
				n, etag, err := read(ctx, c, urls[k%len(urls)])
				if err != nil {
					errs <- err
					return
				}
				to := urls[(k+1)%len(urls)]
				res, err := write(ctx, c, to, n+1, etag)
				if err != nil {
					errs <- err
					return
				}
				switch s := res.StatusCode; {
				case s >= 200 && s < 300:
					done++
					okN.Add(1)
				case s == http.StatusPreconditionFailed:
					refusedN.Add(1)
					time.Sleep(rand.N(2 * time.Millisecond))
				default:
					errs <- fmt.Errorf("PUT %s: unexpected status %d", to, s)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return okN.Load(), refusedN.Load(), <-errs
}

func urlsOf(ps []*testutil.Process, path string) []string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL + path
	}
	return urls
}

func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
}

// TestReplicasLoseNoUpdate is the product's promise across replicas:
// clients that read through one replica and write through another lose no
// update, with verify upstream and with verify cache. The same load on
// replicas without the cluster loses updates, which shows the test can
// fail.
func TestReplicasLoseNoUpdate(t *testing.T) {
	const clients, per = 16, 4
	const want = clients * per
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := httpClient()
	defer c.CloseIdleConnections()

	t.Run("without the cluster", func(t *testing.T) {
		up := testutil.StartCounterStore(t, time.Millisecond)
		replicas := startReplicas(t, 2, replicaConfig("", 0, up.URL, ""))
		ok, refused, err := incrementLoad(ctx, c, urlsOf(replicas, "/counter"), clients, per)
		if err != nil {
			t.Fatal(err)
		}
		lost := int(ok) - up.Value()
		t.Logf("%d increments succeeded, %d refused, counter %d: %d lost", ok, refused, up.Value(), lost)
		if lost <= 0 {
			t.Fatalf("two replicas without the cluster lost no update: the load does not contend across replicas, so the test proves nothing")
		}
	})

	redis := testutil.StartRedis(t)
	for _, verify := range []string{"upstream", "cache"} {
		t.Run("verify "+verify, func(t *testing.T) {
			up := testutil.StartCounterStore(t, time.Millisecond)
			cfg := replicaConfig(redis.Addr, 3*time.Second, up.URL, "verify "+verify)
			replicas := startReplicas(t, 2, cfg)
			start := time.Now()
			ok, refused, err := incrementLoad(ctx, c, urlsOf(replicas, "/counter"), clients, per)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d increments succeeded, %d refused with 412, counter %d, %d PUTs reached the upstream, in %s",
				ok, refused, up.Value(), up.Puts(), time.Since(start).Round(time.Millisecond))
			if ok != want || up.Value() != want || up.Puts() != want {
				t.Fatalf("%d increments succeeded, %d PUTs reached the upstream, but the counter is %d: want %d each", ok, up.Puts(), up.Value(), want)
			}
			if refused == 0 {
				t.Fatal("no attempt was refused: the clients did not contend, so the test proved nothing")
			}
		})
	}
}
