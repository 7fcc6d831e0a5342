package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// benchStore is a minimal upstream for the write benchmark: GET returns
// the document at a path, PUT replaces it.
type benchStore struct {
	mu   sync.Mutex
	docs map[string][]byte
	gets atomic.Int64
}

func (s *benchStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.gets.Add(1)
		s.mu.Lock()
		d, ok := s.docs[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(d)
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.docs[r.URL.Path] = b
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

// BenchmarkCaddyConditionalPUT compares a conditional PUT through etag and
// reverse_proxy with a plain PUT through reverse_proxy alone, in the same
// run and interleaved, so both see the same machine. It reports each
// one's time per request, their ratio, and how many GETs the gateway sent
// upstream per conditional PUT.
//
//	go test -run '^$' -bench BenchmarkCaddyConditionalPUT ./caddymodule/
func BenchmarkCaddyConditionalPUT(b *testing.B) {
	store := &benchStore{docs: map[string][]byte{}}
	up := httptest.NewServer(store)
	defer up.Close()
	addr := strings.TrimPrefix(up.URL, "http://")
	plainPort, cachePort := testutil.FreePort(b), testutil.FreePort(b)
	base := testutil.Start(b, fmt.Sprintf(`:{port} {
	bind 127.0.0.1
	etag
	reverse_proxy %[1]s
}
:%[2]d {
	bind 127.0.0.1
	etag {
		verify cache
	}
	reverse_proxy %[1]s
}
:%[3]d {
	bind 127.0.0.1
	reverse_proxy %[1]s
}
`, addr, cachePort, plainPort))
	plain := fmt.Sprintf("http://127.0.0.1:%d", plainPort)
	gateways := map[string]string{"upstream": base, "cache": fmt.Sprintf("http://127.0.0.1:%d", cachePort)}
	client := testutil.Client()

	doc := func(i int) string {
		return `{"id":42,"name":"widget","tags":["blue","small"],"count":` + strconv.Itoa(i) + `,"note":"` + strings.Repeat("x", 120) + `"}`
	}
	put := func(u string, body string, etag string) (string, time.Duration) {
		req, err := http.NewRequest(http.MethodPut, u, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		d := time.Since(start)
		if res.StatusCode != http.StatusNoContent {
			b.Fatalf("PUT %s: %d", u, res.StatusCode)
		}
		return res.Header.Get("ETag"), d
	}

	for _, verify := range []string{"upstream", "cache"} {
		b.Run("verify="+verify, func(b *testing.B) {
			path := "/bench/" + verify
			put(plain+path, doc(0), "")
			res, err := client.Get(gateways[verify] + path)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			etag := res.Header.Get("ETag")
			var plainTotal, etagTotal time.Duration
			gets := store.gets.Load()
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				_, d := put(plain+"/bench/plain", doc(i), "")
				plainTotal += d
				etag, d = put(gateways[verify]+path, doc(i), etag)
				etagTotal += d
				if etag == "" {
					b.Fatal("the conditional PUT returned no ETag")
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(plainTotal.Nanoseconds())/n, "plain-ns/put")
			b.ReportMetric(float64(etagTotal.Nanoseconds())/n, "etag-ns/put")
			b.ReportMetric(float64(etagTotal)/float64(plainTotal), "etag/plain")
			b.ReportMetric(float64(store.gets.Load()-gets)/n, "upstream-GETs/put")
		})
	}
}
