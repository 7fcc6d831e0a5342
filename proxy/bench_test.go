package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strconv"
	"testing"
)

// The read path's allocations, measured with an in-process next handler and
// a ResponseWriter that keeps nothing, so that only the middleware's own
// allocations count.
//
//	go test ./proxy/ -run '^$' -bench BenchmarkRead -benchmem

// benchWriter is a ResponseWriter that reuses one header map and discards
// the body.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// benchUpstream answers like a JSON API behind reverse_proxy: fixed
// headers, then the body in 32 KiB writes (reverse_proxy's copy buffer).
func benchUpstream(body []byte) Handler {
	ct := []string{"application/json"}
	cl := []string{strconv.Itoa(len(body))}
	return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		h := w.Header()
		h["Content-Type"] = ct
		h["Content-Length"] = cl
		w.WriteHeader(http.StatusOK)
		for b := body; len(b) > 0; {
			n := min(len(b), 32<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	})
}

// readBench is one configured read: middleware, request, next and writer.
type readBench struct {
	m    *Middleware
	r    *http.Request
	next Handler
	w    *benchWriter
	want int
}

func newReadBench(tb testing.TB, size int, notModified bool) *readBench {
	tb.Helper()
	m, err := New(DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	body := bytes.Repeat([]byte(`{"k":"v"},`), size/10+1)[:size]
	rb := &readBench{
		m:    m,
		r:    httptest.NewRequest(http.MethodGet, "http://api.example/items/1", nil),
		next: benchUpstream(body),
		w:    &benchWriter{h: http.Header{}},
		want: http.StatusOK,
	}
	rb.r.Header.Set("Authorization", "Bearer token")
	if notModified {
		rb.r.Header.Set("If-None-Match", DefaultConfig().Hash.Sum(body))
		rb.want = http.StatusNotModified
	}
	rb.run(tb) // warm the pools
	return rb
}

func (rb *readBench) run(tb testing.TB) {
	rb.w.reset()
	if err := rb.m.ServeHTTP(rb.w, rb.r, rb.next); err != nil {
		tb.Fatal(err)
	}
	if rb.w.status != rb.want {
		tb.Fatalf("status %d, want %d", rb.w.status, rb.want)
	}
}

func benchmarkRead(b *testing.B, size int, notModified bool) {
	rb := newReadBench(b, size, notModified)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		rb.run(b)
	}
}

func BenchmarkReadGet4KiB(b *testing.B)         { benchmarkRead(b, 4<<10, false) }
func BenchmarkReadGet1MiB(b *testing.B)         { benchmarkRead(b, 1<<20, false) }
func BenchmarkReadNotModified4KiB(b *testing.B) { benchmarkRead(b, 4<<10, true) }
func BenchmarkReadNotModified1MiB(b *testing.B) { benchmarkRead(b, 1<<20, true) }

// raceEnabled reports whether the test binary was built with -race, under
// which sync.Pool drops items at random and allocation counts mean little.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestReadAllocations keeps the read path's allocations per request from
// creeping up: the body buffer and hasher are pooled, so neither the body
// size nor a 304 should cost more than a handful of small allocations.
func TestReadAllocations(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	cases := []struct {
		name        string
		size        int
		notModified bool
		max         float64
	}{
		{"GET 4KiB", 4 << 10, false, 4},
		{"GET 1MiB", 1 << 20, false, 4},
		{"304 4KiB", 4 << 10, true, 4},
		{"304 1MiB", 1 << 20, true, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rb := newReadBench(t, c.size, c.notModified)
			allocs := testing.AllocsPerRun(200, func() { rb.run(t) })
			t.Logf("%.1f allocations per request", allocs)
			if allocs > c.max {
				t.Errorf("%.1f allocations per request, want at most %.0f", allocs, c.max)
			}
		})
	}
}
