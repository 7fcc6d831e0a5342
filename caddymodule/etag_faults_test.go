package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
)

// These tests put etag and reverse_proxy in front of an upstream that
// misbehaves on purpose, for each of the gateway's own GETs and for a plain
// read: the client must always get an HTTP answer it can act on.

// A fault is one way for an upstream GET to go wrong.
type fault string

const (
	faultNone        fault = ""
	faultReset       fault = "reset mid-body"
	faultBadChunk    fault = "bad chunk size"
	faultCloseEarly  fault = "close before headers"
	faultGarbage     fault = "garbage status line"
	faultServerError fault = "500"
)

var faults = []fault{faultReset, faultBadChunk, faultCloseEarly, faultGarbage, faultServerError}

// faultBodyPrefix is what faultReset and faultBadChunk send of a body
// before it breaks.
const faultBodyPrefix = "the first bytes of a body that never ends"

// faultUpstream is a wrUpstream whose GETs fail with the armed fault:
// every GET, or only those that follow a write (the after-write GET).
type faultUpstream struct {
	*wrUpstream
	srv *httptest.Server

	mu         sync.Mutex
	mode       fault
	afterWrite bool // fail GETs only once a write arrived
	wrote      bool
	failed     int // GETs answered with the fault
}

func startFaultUpstream(t *testing.T) *faultUpstream {
	t.Helper()
	f := &faultUpstream{wrUpstream: &wrUpstream{docs: map[string]wrDoc{}}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.addr = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

// arm makes GETs fail with mode from now on, or only after the next write.
func (f *faultUpstream) arm(mode fault, afterWrite bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode, f.afterWrite, f.wrote, f.failed = mode, afterWrite, false, 0
}

func (f *faultUpstream) failures() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *faultUpstream) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		f.wrote = true
	}
	mode := f.mode
	if r.Method != http.MethodGet || (f.afterWrite && !f.wrote) {
		mode = faultNone
	}
	if mode != faultNone {
		f.failed++
	}
	f.mu.Unlock()
	if mode == faultNone {
		f.wrUpstream.ServeHTTP(w, r)
		return
	}
	if mode == faultServerError {
		http.Error(w, "database unavailable", http.StatusInternalServerError)
		return
	}
	if mode == faultReset {
		// A body that announces more than it sends, then a TCP reset.
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "100000")
		_, _ = io.WriteString(w, faultBodyPrefix)
		w.(http.Flusher).Flush()
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	switch mode {
	case faultReset:
		_ = conn.(*net.TCPConn).SetLinger(0)
	case faultBadChunk:
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\nzz\r\n", len(faultBodyPrefix), faultBodyPrefix))
	case faultGarbage:
		_, _ = buf.WriteString("SPLAT NOT HTTP\r\n\r\n")
	}
	_ = buf.Flush()
}

// faultSites starts two sites in front of up: one with etag's defaults and
// one with verify cache, whose cache must not learn anything from a
// broken response.
func faultSites(t *testing.T, up *faultUpstream) (plain, cached string) {
	t.Helper()
	rp := "\treverse_proxy " + up.addr
	bases := wrSites(t, "\tetag\n"+rp, "\tetag {\n\t\tverify cache\n\t}\n"+rp)
	return bases[0], bases[1]
}

// faultSend is wrSend that fails the test on a transport error: an answer
// of any status is what these tests ask for.
func faultSend(t *testing.T, what, method, u, body string, header ...string) wrResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := wrSend(t.Context(), method, u, rd, header...)
	if err != nil {
		t.Fatalf("%s: no HTTP answer: %v", what, err)
	}
	return r
}

// TestCaddyETagCheckGetFaults: a conditional write whose check GET fails in
// any way is answered 502 with a problem body and never forwarded.
func TestCaddyETagCheckGetFaults(t *testing.T) {
	up := startFaultUpstream(t)
	plain, cached := faultSites(t, up)
	partial := hashing.XXH3.Sum([]byte(faultBodyPrefix))
	for si, base := range []string{plain, cached} {
		for _, mode := range faults {
			for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
				what := fmt.Sprintf("%s %s with check GET %s", base, method, mode)
				path := fmt.Sprintf("/%d", si) + "/check/" + strings.ReplaceAll(string(mode), " ", "-") + "/" + method
				// The path is new to the gateway, so even verify cache must GET.
				up.arm(faultNone, false)
				up.set(path, "v1", time.Now())
				before := len(up.writesTo(path))
				up.arm(mode, false)
				r := faultSend(t, what, method, base+path, "v2", "If-Match: *")
				wrProblem(t, what, r, http.StatusBadGateway)
				if up.failures() == 0 {
					t.Fatalf("%s: the check GET never reached the faulty upstream", what)
				}
				if n := len(up.writesTo(path)) - before; n != 0 {
					t.Fatalf("%s: %d writes forwarded after a failed check", what, n)
				}
				if r.header.Get("ETag") != "" {
					t.Errorf("%s: the 502 carries ETag %q", what, r.header.Get("ETag"))
				}
				// Had the broken body's hash been cached, verify cache would
				// take it for the current ETag and forward this write.
				up.arm(faultNone, false)
				r = faultSend(t, what, method, base+path, "v2", "If-Match: "+partial)
				wrProblem(t, what+", then the broken body's hash", r, http.StatusPreconditionFailed)
			}
		}
	}
	up.arm(faultNone, false)
	wrEventuallyUnlocked(t)
}

// TestCaddyETagAfterWriteGetFaults: a write the upstream accepted, whose
// after-write GET then fails in any way, is answered with the upstream's
// 2xx without an ETag; a cached ETag of the old state is gone.
func TestCaddyETagAfterWriteGetFaults(t *testing.T) {
	up := startFaultUpstream(t)
	plain, cached := faultSites(t, up)
	for si, base := range []string{plain, cached} {
		for _, mode := range faults {
			for _, method := range []string{http.MethodPut, http.MethodPatch} {
				what := fmt.Sprintf("%s %s with after-write GET %s", base, method, mode)
				path := fmt.Sprintf("/%d", si) + "/after/" + strings.ReplaceAll(string(mode), " ", "-") + "/" + method
				up.arm(faultNone, false)
				up.set(path, "v1", time.Now())
				old := wrGetETag(t, base+path)
				up.arm(mode, true)
				r := faultSend(t, what, method, base+path, "v2", "If-Match: "+old)
				if r.status != http.StatusNoContent {
					t.Fatalf("%s: %d %s, want the upstream's 204", what, r.status, r.body)
				}
				if up.failures() == 0 {
					t.Fatalf("%s: the after-write GET never reached the faulty upstream", what)
				}
				if r.header.Get("ETag") != "" {
					t.Errorf("%s: answered with ETag %q from a broken read", what, r.header.Get("ETag"))
				}
				if n := len(up.writesTo(path)); n != 1 {
					t.Fatalf("%s: the upstream saw %d writes, want 1: %+v", what, n, up.writesTo(path))
				}
				up.arm(faultNone, false)
				cur := wrGetETag(t, base+path)
				if cur == old {
					t.Fatalf("%s: the write did not change the ETag", what)
				}
				again := faultSend(t, what, method, base+path, "v3", "If-Match: "+old)
				wrProblem(t, what+", then the old ETag", again, http.StatusPreconditionFailed)
				if again.header.Get("ETag") != cur {
					t.Errorf("%s: 412 carries ETag %q, want the current %s", what, again.header.Get("ETag"), cur)
				}
			}
		}
	}
	wrEventuallyUnlocked(t)
}

// TestCaddyETagReadFaults: a plain GET or HEAD whose upstream fails before
// anything reached the client gets a 502; one whose body breaks mid-way is
// a 502 problem too, since the gateway was still buffering it. Nothing of
// the broken body is cached.
func TestCaddyETagReadFaults(t *testing.T) {
	up := startFaultUpstream(t)
	plain, cached := faultSites(t, up)
	partial := hashing.XXH3.Sum([]byte(faultBodyPrefix))
	for si, base := range []string{plain, cached} {
		for _, mode := range faults {
			path := fmt.Sprintf("/%d", si) + "/read/" + strings.ReplaceAll(string(mode), " ", "-")
			up.arm(faultNone, false)
			up.set(path, "v1", time.Now())
			up.arm(mode, false)
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				what := fmt.Sprintf("%s %s with %s", base, method, mode)
				r := faultSend(t, what, method, base+path, "")
				want := http.StatusBadGateway
				if mode == faultServerError {
					want = http.StatusInternalServerError // relayed untouched
				}
				if r.status != want {
					t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, want)
				}
				if mode == faultReset || mode == faultBadChunk {
					if method == http.MethodGet {
						wrProblem(t, what, r, http.StatusBadGateway)
					} else if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
						t.Errorf("%s: Content-Type %q", what, ct)
					}
					if got := r.header.Get("ETag") + r.header.Get("Last-Modified"); got != "" {
						t.Errorf("%s: the 502 carries the broken response's validators %q", what, got)
					}
				}
			}
			// Had the broken body's hash been cached, verify cache would
			// take it for the current ETag and forward this write.
			up.arm(faultNone, false)
			r := faultSend(t, "PUT after "+string(mode), http.MethodPut, base+path, "v2", "If-Match: "+partial)
			wrProblem(t, "PUT with the broken body's hash after "+string(mode), r, http.StatusPreconditionFailed)
		}
	}
}

// TestCaddyETagReadFaultAfterBytesLeft: a body over max_body streams to the
// client; when it breaks, cutting the connection is the only way to tell
// the client, and the gateway does so.
func TestCaddyETagReadFaultAfterBytesLeft(t *testing.T) {
	up := startFaultUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tmax_body 16\n\t}\n\treverse_proxy "+up.addr)[0]
	up.arm(faultReset, false)
	res, err := testutil.Client().Get(base + "/streamed")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("GET: %d, %q, %v; want 200 and a body cut short", res.StatusCode, body, err)
	}
	if !strings.HasPrefix(faultBodyPrefix, string(body)) {
		t.Errorf("received %q, not a prefix of what the upstream sent", body)
	}
}
