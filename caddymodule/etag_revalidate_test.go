package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/etaggate/etaggate/internal/testutil"
)

// revUpstream is a versioned store: every write through it makes a new
// version, whose body names it, and every GET is counted. Its responses
// carry the fields a 304 must repeat, a Date far in the past (so that a 304
// showing it would be the upstream's, not the gateway's) and a cookie that
// a 304 answered from the cache must not repeat. Below /status/<code>/
// it answers every request with that status; a write with X-Hold: <duration>
// takes that long.
type revUpstream struct {
	addr string
	gets atomic.Int64

	mu      sync.Mutex
	version map[string]int
}

var revOldDate = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Format(http.TimeFormat)

func startRevUpstream(t *testing.T) *revUpstream {
	t.Helper()
	u := &revUpstream{version: map[string]int{}}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	pu, err := url.Parse(srv.URL)
	testutil.Must(t, err)
	u.addr = pu.Host
	return u
}

func revBody(path string, v int) string { return fmt.Sprintf("%s version %d\n", path, v) }

func (u *revUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	var code int
	if _, err := fmt.Sscanf(r.URL.Path, "/status/%d/", &code); err == nil {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		u.gets.Add(1)
		u.mu.Lock()
		v := u.version[r.URL.Path]
		u.mu.Unlock()
		h.Set("Content-Type", "text/plain")
		h.Set("Cache-Control", "private, max-age=60")
		h.Set("Content-Location", r.URL.Path+".txt")
		h.Set("Expires", "Sat, 03 Feb 2001 05:05:06 GMT")
		h.Set("Vary", "Accept-Language")
		h.Set("Date", revOldDate)
		h.Set("Last-Modified", revOldDate)
		h.Set("Set-Cookie", "seen="+strconv.Itoa(v))
		_, _ = io.WriteString(w, revBody(r.URL.Path+" "+r.Header.Get("Authorization"), v))
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if d, err := time.ParseDuration(r.Header.Get("X-Hold")); err == nil {
		time.Sleep(d) // a slow write, holding its resource's lock
	}
	u.mu.Lock()
	u.version[r.URL.Path]++
	v := u.version[r.URL.Path]
	u.mu.Unlock()
	h.Set("X-Version", strconv.Itoa(v))
	w.WriteHeader(http.StatusNoContent)
}

// TestCaddyETagRevalidateCache: with revalidate cache, an If-None-Match
// that names the cached ETag is answered 304 by the gateway alone, with the
// fields the 200 had and the gateway's own Date; anything else goes
// upstream; any write through the gateway, enforced or not, makes the next
// revalidation go upstream again.
func TestCaddyETagRevalidateCache(t *testing.T) {
	up := startRevUpstream(t)
	base := startReadCaddy(t, "\tetag {\n\t\tmethods PUT DELETE\n\t\trevalidate cache\n\t}\n\treverse_proxy "+up.addr)

	res, _ := readDo(t, http.MethodGet, base+"/doc", nil)
	tag := res.Header.Get("Etag")
	if res.StatusCode != 200 || tag == "" || res.Header.Get("Date") != revOldDate {
		t.Fatalf("GET: %d ETag %q Date %q", res.StatusCode, tag, res.Header.Get("Date"))
	}
	before := up.gets.Load()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		status, h, rest := testutil.RawExchange(t, base, method, "/doc", "If-None-Match: W/"+tag+`, "other"`)
		if !strings.Contains(status, " 304 ") || len(rest) != 0 {
			t.Fatalf("%s revalidation: %q with %d bytes after the header", method, status, len(rest))
		}
		for _, f := range []string{"Etag", "Cache-Control", "Content-Location", "Expires", "Vary"} {
			if h.Get(f) != res.Header.Get(f) {
				t.Errorf("%s 304 %s %q, the 200 had %q", method, f, h.Get(f), res.Header.Get(f))
			}
		}
		for _, f := range []string{"Content-Type", "Content-Length", "Last-Modified", "Set-Cookie"} {
			if v, ok := h[f]; ok {
				t.Errorf("%s 304 carries %s %q", method, f, v)
			}
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil || time.Since(date).Abs() > time.Minute {
			t.Errorf("%s 304 Date %q, want the gateway's current date", method, h.Get("Date"))
		}
	}
	if n := up.gets.Load() - before; n != 0 {
		t.Fatalf("the revalidations sent %d requests upstream, want none", n)
	}

	// Not the cached tag, another variant, or no If-None-Match at all: upstream.
	for _, hdr := range [][]string{
		{`If-None-Match: "other"`},
		{"If-None-Match: " + tag, "Authorization: Bearer someone"},
		{"If-Modified-Since: " + time.Now().UTC().Format(http.TimeFormat)},
		{"If-None-Match: " + tag, `If-Match: "other"`},
	} {
		before := up.gets.Load()
		res, _ := readDo(t, http.MethodGet, base+"/doc", nil, hdr...)
		if res.StatusCode == http.StatusNotModified && !strings.HasPrefix(hdr[0], "If-Modified-Since") {
			t.Errorf("%q: 304", hdr)
		}
		if up.gets.Load() == before {
			t.Errorf("%q was answered without the upstream", hdr)
		}
	}

	// A write through the gateway makes the old tag stale at once: an
	// enforced PUT, and a PATCH, which this site does not enforce.
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodPost} {
		res, _ := readDo(t, http.MethodGet, base+"/doc", nil)
		old := res.Header.Get("Etag")
		if res, _ := readDo(t, http.MethodGet, base+"/doc", nil, "If-None-Match: "+old); res.StatusCode != 304 {
			t.Fatalf("revalidation before the %s: %d", method, res.StatusCode)
		}
		if res, _ := readDo(t, method, base+"/doc", strings.NewReader("x")); res.StatusCode != 204 {
			t.Fatalf("%s: %d", method, res.StatusCode)
		}
		before := up.gets.Load()
		res, body := readDo(t, http.MethodGet, base+"/doc", nil, "If-None-Match: "+old)
		if res.StatusCode != 200 || res.Header.Get("Etag") == old || up.gets.Load() == before {
			t.Fatalf("revalidation after the %s: %d ETag %q (old %q) body %q", method, res.StatusCode, res.Header.Get("Etag"), old, body)
		}
	}
}

// TestCaddyETagRevalidateUpstream: by default every revalidation is asked
// of the upstream.
func TestCaddyETagRevalidateUpstream(t *testing.T) {
	up := startRevUpstream(t)
	base := startReadCaddy(t, "\tetag {\n\t\tverify cache\n\t}\n\treverse_proxy "+up.addr)
	res, _ := readDo(t, http.MethodGet, base+"/doc", nil)
	tag := res.Header.Get("Etag")
	for range 3 {
		before := up.gets.Load()
		res, _ := readDo(t, http.MethodGet, base+"/doc", nil, "If-None-Match: "+tag)
		if res.StatusCode != 304 || up.gets.Load() != before+1 {
			t.Fatalf("revalidation: %d with %d upstream GETs, want 304 with one", res.StatusCode, up.gets.Load()-before)
		}
	}
}

// TestCaddyETagRevalidateCacheRace runs readers revalidating while writers
// write one resource through the gateway. A reader that revalidates after
// a write's 2xx reached its writer must never be told its older version
// is not modified. Run it with -race.
func TestCaddyETagRevalidateCacheRace(t *testing.T) {
	up := startRevUpstream(t)
	base := startReadCaddy(t, "\tetag {\n\t\trevalidate cache\n\t}\n\treverse_proxy "+up.addr)
	var confirmed atomic.Int64 // the newest version whose write's 2xx a writer has received
	var fromCache, stale atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	client := testutil.Client()

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPut, base+"/doc", strings.NewReader("x"))
				res, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				v, err := strconv.Atoi(res.Header.Get("X-Version"))
				if res.StatusCode != 204 || err != nil {
					t.Errorf("PUT: %d version %q", res.StatusCode, res.Header.Get("X-Version"))
					return
				}
				for c := confirmed.Load(); int64(v) > c && !confirmed.CompareAndSwap(c, int64(v)); c = confirmed.Load() {
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	for range 8 {
		wg.Go(func() {
			var tag string
			version := -1
			for time.Now().Before(deadline) {
				atLeast := confirmed.Load()
				req, _ := http.NewRequest(http.MethodGet, base+"/doc", nil)
				if tag != "" {
					req.Header.Set("If-None-Match", tag)
				}
				before := up.gets.Load()
				res, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusNotModified:
					if up.gets.Load() == before {
						fromCache.Add(1)
					}
					if int64(version) < atLeast {
						stale.Add(1)
						t.Errorf("304 for version %d after the write of version %d was answered", version, atLeast)
					}
				case http.StatusOK:
					tag = res.Header.Get("Etag")
					_, err := fmt.Sscanf(string(body), "/doc  version %d\n", &version)
					if err != nil {
						t.Errorf("body %q: %v", body, err)
						return
					}
				default:
					t.Errorf("GET: %d", res.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d versions written, %d revalidations answered from the cache, %d stale", confirmed.Load(), fromCache.Load(), stale.Load())
	if confirmed.Load() < 10 || fromCache.Load() < 10 {
		t.Fatalf("the race did not run: %d writes, %d revalidations from the cache", confirmed.Load(), fromCache.Load())
	}
}
