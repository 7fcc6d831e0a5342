package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/etaggate/etaggate/internal/testutil"
)

// These tests run real Caddy in-process with etag in front of
// reverse_proxy to real upstreams on 127.0.0.1. Caddy runs one
// configuration per process, so none of them is parallel.

// wrUpstream is a legacy store that knows nothing of preconditions. GET
// answers a document with its Last-Modified (none for a zero time); PUT
// replaces, PATCH appends, DELETE removes, and a POST does what its
// X-HTTP-Method-Override names. It records every write that reaches it.
type wrUpstream struct {
	addr string

	mu     sync.Mutex
	docs   map[string]wrDoc
	writes []wrWrite
	// afterRead, when set, runs once a GET has read the state and before
	// it answers; holdWrite runs once a write has read its body and before
	// it is applied.
	afterRead func(r *http.Request)
	holdWrite func(r *http.Request) error
}

type wrDoc struct {
	body     []byte
	modified time.Time
}

type wrWrite struct {
	method, path string
	header       http.Header
	body         []byte
	status       int
}

func startWrUpstream(t *testing.T) *wrUpstream {
	t.Helper()
	u := &wrUpstream{docs: map[string]wrDoc{}}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	pu, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pu.Host
	return u
}

func (u *wrUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	d, ok := u.docs[r.URL.Path]
	afterRead, holdWrite := u.afterRead, u.holdWrite
	u.mu.Unlock()
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if afterRead != nil {
			afterRead(r)
		}
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		if !d.modified.IsZero() {
			w.Header().Set("Last-Modified", d.modified.UTC().Format(http.TimeFormat))
		}
		_, _ = w.Write(d.body)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if holdWrite != nil {
		if err := holdWrite(r); err != nil {
			return
		}
	}
	u.mu.Lock()
	d, ok = u.docs[r.URL.Path]
	status := http.StatusNoContent
	now := time.Now()
	method := r.Method
	if o := r.Header.Get("X-Http-Method-Override"); o != "" && method == http.MethodPost {
		method = o // as many legacy frameworks do
	}
	switch method {
	case http.MethodPut:
		if !ok {
			status = http.StatusCreated
		}
		u.docs[r.URL.Path] = wrDoc{body, now}
	case http.MethodPatch:
		if !ok {
			status = http.StatusCreated
		}
		u.docs[r.URL.Path] = wrDoc{append(d.body[:len(d.body):len(d.body)], body...), now}
	case http.MethodDelete:
		if !ok {
			status = http.StatusNotFound
		}
		delete(u.docs, r.URL.Path)
	default:
		status = http.StatusMethodNotAllowed
	}
	u.writes = append(u.writes, wrWrite{r.Method, r.URL.Path, r.Header.Clone(), body, status})
	u.mu.Unlock()
	w.WriteHeader(status)
}

// set writes a document directly, bypassing any gateway.
func (u *wrUpstream) set(path, body string, modified time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.docs[path] = wrDoc{[]byte(body), modified}
}

func (u *wrUpstream) doc(path string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	d, ok := u.docs[path]
	return string(d.body), ok
}

// writesTo returns the writes that reached path.
func (u *wrUpstream) writesTo(path string) []wrWrite {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []wrWrite
	for _, w := range u.writes {
		if w.path == path {
			out = append(out, w)
		}
	}
	return out
}

func (u *wrUpstream) writeCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.writes)
}

// wrSites loads one site per route, each bound to 127.0.0.1 on its own
// port, and returns their base URLs in order.
func wrSites(t *testing.T, routes ...string) []string {
	t.Helper()
	var cf strings.Builder
	bases := make([]string, len(routes))
	for i, route := range routes {
		port := "{port}"
		if i > 0 {
			port = strconv.Itoa(testutil.FreePort(t))
			bases[i] = "http://127.0.0.1:" + port
		}
		fmt.Fprintf(&cf, ":%s {\n\tbind 127.0.0.1\n%s\n}\n", port, route)
	}
	bases[0] = testutil.Start(t, cf.String())
	for _, b := range bases[1:] {
		testutil.WaitListening(t, strings.TrimPrefix(b, "http://"))
	}
	return bases
}

// wrLockedKeys returns how many keys the process's shared write-lock table
// holds or has waiters for.
func wrLockedKeys(t *testing.T) int {
	t.Helper()
	n := -1
	writeLocks.Range(func(_, v any) bool {
		n = v.(sharedLocks).Len()
		return false
	})
	if n < 0 {
		t.Fatal("no shared write-lock table: is an etag handler provisioned?")
	}
	return n
}

func wrEventuallyUnlocked(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for wrLockedKeys(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the write-lock table still holds %d keys", wrLockedKeys(t))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type wrResp struct {
	status int
	header http.Header
	body   []byte
}

// wrSend sends a request with header lines "Name: value"; it returns the
// transport's error rather than failing, for requests a test cancels.
func wrSend(ctx context.Context, method, u string, body io.Reader, header ...string) (wrResp, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return wrResp{}, err
	}
	for _, h := range header {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return wrResp{}, fmt.Errorf("bad header line %q", h)
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	res, err := testutil.Client().Do(req)
	if err != nil {
		return wrResp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return wrResp{res.StatusCode, res.Header, b}, err
}

func wrDo(t *testing.T, method, u, body string, header ...string) wrResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := wrSend(context.Background(), method, u, rd, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return r
}

// wrGetETag GETs u through the gateway and returns its ETag.
func wrGetETag(t *testing.T, u string, header ...string) string {
	t.Helper()
	r := wrDo(t, http.MethodGet, u, "", header...)
	if r.status != http.StatusOK || r.header.Get("ETag") == "" {
		t.Fatalf("GET %s: %d ETag %q", u, r.status, r.header.Get("ETag"))
	}
	return r.header.Get("ETag")
}

// wrProblem asserts r is an RFC 9457 problem with the given status and
// returns its members.
func wrProblem(t *testing.T, what string, r wrResp, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%s: problem body %q: %v", what, r.body, err)
	}
	if p["type"] != "about:blank" || p["title"] != http.StatusText(status) || p["status"] != float64(status) {
		t.Fatalf("%s: problem %s lacks type, title or status %d", what, r.body, status)
	}
	if d, _ := p["detail"].(string); d == "" {
		t.Fatalf("%s: problem %s has no detail", what, r.body)
	}
	return p
}

type wrCase struct {
	name   string
	exists bool
	// header gives the request's precondition lines; e is an ETag the
	// resource had: its current one, or for a missing resource the one it
	// had before it was deleted.
	header func(e string) []string
	// status is 400, 412 or 428 for a request that must not be forwarded,
	// or 0 for one that must.
	status int
	field  string // the header a 400 or 412 names
}

// wrHeaderLines returns request header lines in which $E stands for the
// current ETag.
func wrHeaderLines(lines ...string) func(string) []string {
	return func(e string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			out[i] = strings.ReplaceAll(l, "$E", e)
		}
		return out
	}
}

// wrListsTags reports whether request header lines carry an If-Match that
// lists entity-tags (not "*").
func wrListsTags(lines []string) bool {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "If-Match:"); ok && strings.TrimSpace(v) != "*" {
			return true
		}
	}
	return false
}

func wrCases(lm time.Time) []wrCase {
	date := func(d time.Duration) string { return lm.Add(d).UTC().Format(http.TimeFormat) }
	h := wrHeaderLines
	return []wrCase{
		// If-Match on an existing resource: strong comparison.
		{"If-Match current", true, h("If-Match: $E"), 0, ""},
		{"If-Match stale", true, h(`If-Match: "stale"`), 412, "If-Match"},
		{"If-Match *", true, h("If-Match: *"), 0, ""},
		{"If-Match list with current", true, h(`If-Match: "x", $E, "y"`), 0, ""},
		{"If-Match list without current", true, h(`If-Match: "x", "y"`), 412, "If-Match"},
		{"If-Match over two lines", true, h(`If-Match: "x"`, "If-Match: $E"), 0, ""},
		{"If-Match weak current", true, h("If-Match: W/$E"), 412, "If-Match"},
		// If-None-Match on an existing resource: weak comparison.
		{"If-None-Match *", true, h("If-None-Match: *"), 412, "If-None-Match"},
		{"If-None-Match current", true, h("If-None-Match: $E"), 412, "If-None-Match"},
		{"If-None-Match weak current", true, h("If-None-Match: W/$E"), 412, "If-None-Match"},
		{"If-None-Match list with current", true, h(`If-None-Match: "x", $E`), 412, "If-None-Match"},
		{"If-None-Match other tags", true, h(`If-None-Match: "x", W/"y"`), 0, ""},
		// If-Unmodified-Since, alone and with If-Match.
		{"If-Unmodified-Since equal", true, h("If-Unmodified-Since: " + date(0)), 0, ""},
		{"If-Unmodified-Since later", true, h("If-Unmodified-Since: " + date(time.Hour)), 0, ""},
		{"If-Unmodified-Since earlier", true, h("If-Unmodified-Since: " + date(-time.Hour)), 412, "If-Unmodified-Since"},
		{"If-Unmodified-Since invalid is ignored", true, h("If-Unmodified-Since: yesterday"), 0, ""},
		{"If-Unmodified-Since earlier ignored with If-Match current", true, h("If-Match: $E", "If-Unmodified-Since: "+date(-time.Hour)), 0, ""},
		{"If-Unmodified-Since later with If-Match stale", true, h(`If-Match: "stale"`, "If-Unmodified-Since: "+date(time.Hour)), 412, "If-Match"},
		// Combinations.
		{"If-Match current and If-None-Match *", true, h("If-Match: $E", "If-None-Match: *"), 412, "If-None-Match"},
		{"If-Match current and If-None-Match other", true, h("If-Match: $E", `If-None-Match: "x"`), 0, ""},
		{"If-Modified-Since is not a write precondition", true, h("If-Modified-Since: " + date(time.Hour)), 0, ""},
		{"no precondition", true, h(), 0, ""},
		// Malformed lists.
		{"If-Match unquoted", true, h("If-Match: abc"), 400, "If-Match"},
		{"If-None-Match missing comma", true, h(`If-None-Match: "a" "b"`), 400, "If-None-Match"},
		{"If-Match * in a list", true, h(`If-Match: *, $E`), 400, "If-Match"},
		// A missing resource.
		{"missing: If-Match its old ETag", false, h("If-Match: $E"), 412, "If-Match"},
		{"missing: If-Match *", false, h("If-Match: *"), 412, "If-Match"},
		{"missing: If-Match list", false, h(`If-Match: "x", $E`), 412, "If-Match"},
		{"missing: If-None-Match * creates", false, h("If-None-Match: *"), 0, ""},
		{"missing: If-None-Match old ETag", false, h("If-None-Match: $E"), 0, ""},
		{"missing: If-Unmodified-Since has no date to compare", false, h("If-Unmodified-Since: " + date(-time.Hour)), 0, ""},
		{"missing: If-Unmodified-Since and If-Match *", false, h("If-Match: *", "If-Unmodified-Since: "+date(time.Hour)), 412, "If-Match"},
		{"missing: no precondition", false, h(), 0, ""},
	}
}

// wrRequireCases run with require_precondition.
func wrRequireCases(lm time.Time) []wrCase {
	h := wrHeaderLines
	return []wrCase{
		{"no precondition", true, h(), 428, ""},
		{"missing: no precondition", false, h(), 428, ""},
		{"only If-Modified-Since", true, h("If-Modified-Since: " + lm.UTC().Format(http.TimeFormat)), 428, ""},
		{"only If-Range", true, h("If-Range: $E"), 428, ""},
		{"If-Match current", true, h("If-Match: $E"), 0, ""},
		{"If-Match stale", true, h(`If-Match: "stale"`), 412, "If-Match"},
		{"If-Unmodified-Since alone", true, h("If-Unmodified-Since: " + lm.UTC().Format(http.TimeFormat)), 0, ""},
		{"missing: If-None-Match * creates", false, h("If-None-Match: *"), 0, ""},
		{"If-None-Match *", true, h("If-None-Match: *"), 412, "If-None-Match"},
	}
}

func TestCaddyETagWritePreconditions(t *testing.T) {
	up := startWrUpstream(t)
	lm := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	rp := "\treverse_proxy " + up.addr
	bases := wrSites(t,
		"\tetag\n"+rp,
		"\tetag {\n\t\tverify cache\n\t}\n"+rp,
		"\tetag {\n\t\trequire_precondition\n\t}\n"+rp,
		"\tetag {\n\t\tverify cache\n\t\trequire_precondition\n\t}\n"+rp,
	)
	type site struct {
		name  string
		base  string
		cases []wrCase
	}
	sites := []site{
		{"verify upstream", bases[0], wrCases(lm)},
		{"verify cache", bases[1], wrCases(lm)},
		{"verify upstream, require_precondition", bases[2], wrRequireCases(lm)},
		{"verify cache, require_precondition", bases[3], wrRequireCases(lm)},
	}
	for si, s := range sites {
		for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			for ci, c := range s.cases {
				t.Run(s.name+"/"+method+"/"+c.name, func(t *testing.T) {
					path := fmt.Sprintf("/m/%d/%s/%d", si, method, ci)
					url := s.base + path
					up.set(path, "v1 of "+path, lm)
					e := wrGetETag(t, url)
					if !c.exists {
						// Deleted through the gateway, as verify cache requires.
						if r := wrDo(t, http.MethodDelete, url, "", "If-Match: "+e); r.status != http.StatusNoContent {
							t.Fatalf("setup DELETE: %d %s", r.status, r.body)
						}
					}
					before := len(up.writesTo(path))
					body := ""
					if method != http.MethodDelete {
						body = "new " + path
					}
					r := wrDo(t, method, url, body, c.header(e)...)
					got := up.writesTo(path)[before:]
					status, field := c.status, c.field
					if method == http.MethodDelete && !c.exists && wrListsTags(c.header(e)) {
						// Nothing to delete: 404, whatever the tags.
						status, field = http.StatusNotFound, ""
					}

					if status != 0 {
						p := wrProblem(t, method, r, status)
						if len(got) != 0 {
							t.Fatalf("answered %d, but the upstream saw %d writes", r.status, len(got))
						}
						if field != "" && p["header"] != field {
							t.Errorf("problem names header %v, want %s: %s", p["header"], field, r.body)
						}
						switch {
						case status == 412 && c.exists:
							if r.header.Get("ETag") != e || p["etag"] != e {
								t.Errorf("412 carries ETag %q (problem %v), want the current %s", r.header.Get("ETag"), p["etag"], e)
							}
						case r.header.Get("ETag") != "":
							t.Errorf("%d carries ETag %q, want none", r.status, r.header.Get("ETag"))
						}
						if _, ok := up.doc(path); ok != c.exists {
							t.Errorf("the resource's existence changed although nothing was forwarded")
						}
						return
					}

					if len(got) != 1 || got[0].method != method {
						t.Fatalf("answered %d, but the upstream saw %d writes (%v); want the %s forwarded once", r.status, len(got), got, method)
					}
					if string(got[0].body) != body {
						t.Errorf("the upstream got body %q, want %q", got[0].body, body)
					}
					for _, f := range []string{"If-Match", "If-None-Match", "If-Unmodified-Since"} {
						if v := got[0].header.Values(f); len(v) > 0 {
							t.Errorf("the forwarded %s carries %s: %q", method, f, v)
						}
					}
					if r.status != got[0].status {
						t.Fatalf("status %d, but the upstream answered %d", r.status, got[0].status)
					}
					if r.status < 300 && method != http.MethodDelete {
						if want := wrGetETag(t, url); r.header.Get("ETag") != want {
							t.Errorf("the write's ETag %q, a following GET's %q", r.header.Get("ETag"), want)
						}
					} else if r.header.Get("ETag") != "" {
						t.Errorf("a %d %s carries ETag %q", r.status, method, r.header.Get("ETag"))
					}
				})
			}
		}
	}
	wrEventuallyUnlocked(t)
}

func TestCaddyETagWriteBypassMakesTagsStale(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag\n\treverse_proxy "+up.addr)[0]
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
		path := "/bypass/" + method
		up.set(path, "v1", time.Now())
		old := wrGetETag(t, base+path)
		up.set(path, "v2, written behind the gateway's back", time.Now())
		r := wrDo(t, method, base+path, "v3", "If-Match: "+old)
		wrProblem(t, method, r, http.StatusPreconditionFailed)
		if cur := wrGetETag(t, base+path); r.header.Get("ETag") != cur || cur == old {
			t.Errorf("%s: 412 carries ETag %q; current %q, old %q", method, r.header.Get("ETag"), cur, old)
		}
		if n := len(up.writesTo(path)); n != 0 {
			t.Errorf("%s with a stale ETag reached the upstream", method)
		}
		if d, _ := up.doc(path); d != "v2, written behind the gateway's back" {
			t.Errorf("%s: the document became %q", method, d)
		}
	}
}

func TestCaddyETagWriteCheckFails(t *testing.T) {
	up := startWrUpstream(t)
	up.set("/r", "v1", time.Now())
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unavailable", http.StatusInternalServerError)
	}))
	defer failing.Close()
	// Reads go to the broken upstream, writes to the working one, so that
	// "nothing forwarded" is something the upstream could have seen.
	split := func(readTo, extra string) string {
		return fmt.Sprintf("\tetag\n\t@read method GET HEAD\n\treverse_proxy @read %s%s\n\treverse_proxy %s", readTo, extra, up.addr)
	}
	bases := wrSites(t,
		split(dead, ""),
		split(strings.TrimPrefix(slow.URL, "http://"), " {\n\t\ttransport http {\n\t\t\tresponse_header_timeout 300ms\n\t\t}\n\t}"),
		split(strings.TrimPrefix(failing.URL, "http://"), ""),
		"\tetag\n\treverse_proxy "+dead,
	)
	for i, tc := range []struct {
		name   string
		status int
	}{
		{"connection refused", http.StatusBadGateway},
		{"response header timeout", http.StatusGatewayTimeout},
		{"500 from the check", http.StatusBadGateway},
		{"whole upstream down", http.StatusBadGateway},
	} {
		pres := []string{`If-Match: "x"`, "If-Match: *", "If-None-Match: *", "If-Unmodified-Since: " + time.Now().UTC().Format(http.TimeFormat)}
		if tc.status == http.StatusGatewayTimeout {
			pres = pres[:1] // each costs the 300ms timeout
		}
		for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			for _, pre := range pres {
				r := wrDo(t, method, bases[i]+"/r", "v2", pre)
				wrProblem(t, tc.name+" "+method+" "+pre, r, tc.status)
			}
		}
	}
	if n := up.writeCount(); n != 0 {
		t.Fatalf("the upstream saw %d writes after failed checks, want 0", n)
	}
	// The write route itself works: an unconditional PUT gets through.
	if r := wrDo(t, http.MethodPut, bases[0]+"/r", "v2"); r.status != http.StatusNoContent || up.writeCount() != 1 {
		t.Fatalf("unconditional PUT: %d, %d writes upstream", r.status, up.writeCount())
	}
	wrEventuallyUnlocked(t)
}

func TestCaddyETagWriteAfterWrite(t *testing.T) {
	up := startWrUpstream(t)
	rp := "\treverse_proxy " + up.addr
	bases := wrSites(t,
		"\tetag {\n\t\tetag_after_write on\n\t}\n"+rp,
		"\tetag {\n\t\tetag_after_write off\n\t}\n"+rp,
		"\tetag {\n\t\tetag_after_write on\n\t\tverify cache\n\t}\n"+rp,
	)
	for i, on := range []bool{true, false, true} {
		path := fmt.Sprintf("/aw/%d", i)
		url := bases[i] + path
		up.set(path, "v1", time.Now())
		e := wrGetETag(t, url)
		for _, method := range []string{http.MethodPut, http.MethodPatch} {
			r := wrDo(t, method, url, "+"+method, "If-Match: "+e)
			if r.status != http.StatusNoContent {
				t.Fatalf("%s: %d %s", method, r.status, r.body)
			}
			next := wrGetETag(t, url)
			if next == e {
				t.Fatalf("%s did not change the ETag", method)
			}
			if on && r.header.Get("ETag") != next {
				t.Errorf("etag_after_write on: %s returned ETag %q, a following GET %q", method, r.header.Get("ETag"), next)
			}
			if !on && r.header.Get("ETag") != "" {
				t.Errorf("etag_after_write off: %s returned ETag %q", method, r.header.Get("ETag"))
			}
			e = next
		}
		if on {
			// The returned ETag is usable as is for the next write.
			r := wrDo(t, http.MethodPut, url, "v3", "If-Match: "+e)
			if r.status != http.StatusNoContent {
				t.Fatalf("PUT: %d", r.status)
			}
			if r2 := wrDo(t, http.MethodPut, url, "v4", "If-Match: "+r.header.Get("ETag")); r2.status != http.StatusNoContent {
				t.Fatalf("PUT with the ETag the previous PUT returned: %d %s", r2.status, r2.body)
			}
		}
		r := wrDo(t, http.MethodDelete, url, "", "If-Match: "+wrGetETag(t, url))
		if r.status != http.StatusNoContent || r.header.Get("ETag") != "" {
			t.Errorf("DELETE: %d ETag %q, want 204 without ETag", r.status, r.header.Get("ETag"))
		}
	}
}

// TestCaddyETagWriteSlowReadRace: a GET that read the old state answers
// after a write replaced it. Under verify cache its ETag must not become
// the cached current one.
func TestCaddyETagWriteSlowReadRace(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tverify cache\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/race", "v1", time.Now())
	url := base + "/race"
	old := wrGetETag(t, url)

	readOld, answer := make(chan struct{}), make(chan struct{})
	up.mu.Lock()
	up.afterRead = func(r *http.Request) {
		if r.Header.Get("X-Slow") != "" {
			close(readOld)
			<-answer
		}
	}
	up.mu.Unlock()
	slow := make(chan wrResp, 1)
	go func() {
		r, err := wrSend(context.Background(), http.MethodGet, url, nil, "X-Slow: 1")
		if err != nil {
			t.Error(err)
		}
		slow <- r
	}()
	select {
	case <-readOld:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow GET never reached the upstream")
	}
	put := wrDo(t, http.MethodPut, url, "v2", "If-Match: "+old)
	if put.status != http.StatusNoContent || put.header.Get("ETag") == "" {
		t.Fatalf("PUT: %d ETag %q", put.status, put.header.Get("ETag"))
	}
	fresh := put.header.Get("ETag")
	close(answer)
	if r := <-slow; r.status != http.StatusOK || r.header.Get("ETag") != old {
		t.Fatalf("slow GET: %d ETag %q, want 200 with the old ETag", r.status, r.header.Get("ETag"))
	}
	// ristretto applies Sets asynchronously; give a stale one time to land.
	time.Sleep(100 * time.Millisecond)

	r := wrDo(t, http.MethodPut, url, "v3", "If-Match: "+old)
	wrProblem(t, "PUT with the old ETag", r, http.StatusPreconditionFailed)
	if r.header.Get("ETag") != fresh {
		t.Errorf("412 carries ETag %q, want %q", r.header.Get("ETag"), fresh)
	}
	if r := wrDo(t, http.MethodPut, url, "v3", "If-Match: "+fresh); r.status != http.StatusNoContent {
		t.Fatalf("PUT with the new ETag: %d %s", r.status, r.body)
	}
	if n := len(up.writesTo("/race")); n != 2 {
		t.Fatalf("the upstream saw %d writes, want 2", n)
	}
}

func TestCaddyETagWriteClientLeaves(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag\n\treverse_proxy "+up.addr)[0]
	up.set("/leave", "v1", time.Now())
	url := base + "/leave"
	e := wrGetETag(t, url)

	entered := make(chan struct{}, 4)
	up.mu.Lock()
	up.holdWrite = func(r *http.Request) error {
		if r.Method != http.MethodPut {
			return nil
		}
		entered <- struct{}{}
		<-r.Context().Done()
		return r.Context().Err()
	}
	up.mu.Unlock()

	holderCtx, leaveHolder := context.WithCancel(context.Background())
	holder := make(chan error, 1)
	go func() {
		_, err := wrSend(holderCtx, http.MethodPut, url, strings.NewReader("v2"), "If-Match: "+e)
		holder <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the PUT never reached the upstream")
	}
	if n := wrLockedKeys(t); n != 1 {
		t.Fatalf("%d keys locked while the PUT is upstream, want 1", n)
	}
	// A DELETE queues behind the PUT, then its client leaves too.
	waiterCtx, leaveWaiter := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	go func() {
		_, err := wrSend(waiterCtx, http.MethodDelete, url, nil, "If-Match: "+e)
		waiter <- err
	}()
	time.Sleep(100 * time.Millisecond)
	leaveWaiter()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("DELETE: %v, want context.Canceled", err)
	}
	leaveHolder()
	if err := <-holder; !errors.Is(err, context.Canceled) {
		t.Fatalf("PUT: %v, want context.Canceled", err)
	}
	wrEventuallyUnlocked(t)
	if w := up.writesTo("/leave"); len(w) != 0 {
		t.Fatalf("the upstream applied %d writes from clients that left", len(w))
	}
	up.mu.Lock()
	up.holdWrite = nil
	up.mu.Unlock()
	if r := wrDo(t, http.MethodDelete, url, "", "If-Match: "+e); r.status != http.StatusNoContent {
		t.Fatalf("DELETE after both clients left: %d %s", r.status, r.body)
	}
}

// wrPattern is an endless deterministic byte stream.
type wrPattern struct{ n uint64 }

func (p *wrPattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.n*2654435761>>24) ^ byte(p.n)
		p.n++
	}
	return len(b), nil
}

func TestCaddyETagWriteLargeUpload(t *testing.T) {
	const size = 64 << 20
	var got struct {
		mu   sync.Mutex
		size int64
		sum  string
	}
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		defer got.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			if got.sum == "" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, `{"size":%d,"sha256":%q}`, got.size, got.sum)
		case http.MethodPut:
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got.size, got.sum = n, hex.EncodeToString(h.Sum(nil))
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer big.Close()
	base := wrSites(t, "\tetag\n\treverse_proxy "+strings.TrimPrefix(big.URL, "http://"))[0]

	sent := sha256.New()
	body := io.TeeReader(io.LimitReader(&wrPattern{}, size), sent)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Wrapped so that the client streams it chunked, length unknown.
	r, err := wrSend(context.Background(), http.MethodPut, base+"/big", io.NopCloser(body), "If-None-Match: *")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	got.mu.Lock()
	gotSize, gotSum := got.size, got.sum
	got.mu.Unlock()
	if gotSize != size || gotSum != hex.EncodeToString(sent.Sum(nil)) {
		t.Fatalf("the upstream got %d bytes with sha256 %s, want %d bytes with %x", gotSize, gotSum, size, sent.Sum(nil))
	}
	// Client, gateway and upstream share this process: all of them together
	// allocated far less than the body, so nobody held it in memory.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Fatalf("%d MiB allocated while streaming a %d MiB body", alloc>>20, size>>20)
	} else {
		t.Logf("%.1f MiB allocated while streaming %d MiB", float64(alloc)/(1<<20), size>>20)
	}
	// The upstream's representation is a summary, not the uploaded content,
	// so RFC 9110 §9.3.4 forbids an ETag on the PUT's response.
	if want := wrGetETag(t, base+"/big"); want == "" || r.header.Get("ETag") != "" {
		t.Errorf("PUT's ETag %q (want none), a following GET's %q (want one)", r.header.Get("ETag"), want)
	}
}

// wrCounter is an upstream without any checking of its own: GET returns a
// number, PUT stores the number it is sent, each pausing between touching
// the state and answering as a store doing I/O would.
type wrCounter struct {
	mu   sync.Mutex
	n    int
	puts atomic.Int64
}

func (c *wrCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const pause = 300 * time.Microsecond
	switch r.Method {
	case http.MethodGet:
		c.mu.Lock()
		n := c.n
		c.mu.Unlock()
		time.Sleep(pause)
		fmt.Fprintf(w, "%d\n", n)
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			http.Error(w, "not a number", http.StatusBadRequest)
			return
		}
		time.Sleep(pause)
		c.mu.Lock()
		c.n = n
		c.mu.Unlock()
		c.puts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (c *wrCounter) value() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// wrIncrements has clients each make per read-modify-write increments of
// u, retrying after a short random pause on 412.
func wrIncrements(u string, clients, per int) (ok, refused int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var okN, refusedN atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for done := 0; done < per; {
				g, err := wrSend(ctx, http.MethodGet, u, nil)
				if err != nil || g.status != http.StatusOK {
					errs <- fmt.Errorf("GET: %d %v", g.status, err)
					return
				}
				n, err := strconv.Atoi(strings.TrimSpace(string(g.body)))
				if err != nil {
					errs <- err
					return
				}
				var hdr []string
				if e := g.header.Get("ETag"); e != "" {
					hdr = append(hdr, "If-Match: "+e)
				}
				p, err := wrSend(ctx, http.MethodPut, u, strings.NewReader(strconv.Itoa(n+1)), hdr...)
				switch {
				case err != nil:
					errs <- err
					return
				case p.status == http.StatusNoContent:
					done++
					okN.Add(1)
				case p.status == http.StatusPreconditionFailed:
					refusedN.Add(1)
					time.Sleep(rand.N(2 * time.Millisecond))
				default:
					errs <- fmt.Errorf("PUT: %d %s", p.status, p.body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return okN.Load(), refusedN.Load(), <-errs
}

// TestCaddyETagWriteNoLostUpdates: 32 clients incrementing one counter
// through Caddy lose nothing; straight to the upstream they lose updates.
func TestCaddyETagWriteNoLostUpdates(t *testing.T) {
	const clients, per = 32, 2
	counters := []*wrCounter{{}, {}, {}}
	addrs := make([]string, len(counters))
	for i, c := range counters {
		srv := httptest.NewServer(c)
		defer srv.Close()
		addrs[i] = strings.TrimPrefix(srv.URL, "http://")
	}
	bases := wrSites(t,
		"\tetag\n\treverse_proxy "+addrs[0],
		"\tetag {\n\t\tverify cache\n\t}\n\treverse_proxy "+addrs[1],
	)
	for i, target := range []string{bases[0], bases[1], "http://" + addrs[2]} {
		name := []string{"verify upstream", "verify cache", "straight to the upstream"}[i]
		ok, refused, err := wrIncrements(target+"/counter", clients, per)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := counters[i]
		t.Logf("%s: %d increments succeeded, %d refused, counter %d, %d PUTs upstream", name, ok, refused, c.value(), c.puts.Load())
		if ok != clients*per {
			t.Fatalf("%s: %d increments succeeded, want %d", name, ok, clients*per)
		}
		if i == 2 {
			if lost := int(ok) - c.value(); lost <= 0 {
				t.Fatalf("straight to the upstream nothing was lost (counter %d): the load does not race, so the test proves nothing", c.value())
			}
			continue
		}
		if c.value() != int(ok) || c.puts.Load() != ok {
			t.Fatalf("%s: %d increments succeeded, the counter is %d after %d PUTs: %d lost", name, ok, c.value(), c.puts.Load(), int(ok)-c.value())
		}
		if refused == 0 {
			t.Fatalf("%s: no attempt was refused, so the clients did not contend", name)
		}
	}
	wrEventuallyUnlocked(t)
}

// TestCaddyETagWriteMethods: only the listed methods are enforced.
func TestCaddyETagWriteMethods(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tmethods PUT post\n\t\trequire_precondition\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/m", "v1", time.Now())
	wrProblem(t, "unconditional PUT", wrDo(t, http.MethodPut, base+"/m", "v2"), http.StatusPreconditionRequired)
	wrProblem(t, "unconditional POST", wrDo(t, http.MethodPost, base+"/m", "v2"), http.StatusPreconditionRequired)
	wrProblem(t, "stale POST", wrDo(t, http.MethodPost, base+"/m", "v2", `If-Match: "stale"`), http.StatusPreconditionFailed)
	if n := up.writeCount(); n != 0 {
		t.Fatalf("the upstream saw %d writes", n)
	}
	// DELETE and PATCH are not listed: they pass through untouched, their
	// preconditions included.
	if r := wrDo(t, http.MethodPatch, base+"/m", "+", `If-Match: "stale"`); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	if w := up.writesTo("/m"); len(w) != 1 || w[0].header.Get("If-Match") != `"stale"` {
		t.Fatalf("PATCH was not passed through as is: %+v", w)
	}
	if r := wrDo(t, http.MethodDelete, base+"/m", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
}

// TestCaddyETagWritePerUserRepresentations: the check reads the resource
// with the writer's own credentials, so each user's If-Match is compared
// with the ETag that user saw, and one user's write makes every user's
// ETag stale.
func TestCaddyETagWritePerUserRepresentations(t *testing.T) {
	var mu sync.Mutex
	doc := "shared"
	var writes atomic.Int64
	perUser := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, "%s, as seen by %s", doc, r.Header.Get("Authorization"))
			return
		}
		b, _ := io.ReadAll(r.Body)
		doc = string(b)
		writes.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer perUser.Close()
	addr := strings.TrimPrefix(perUser.URL, "http://")
	bases := wrSites(t, "\tetag\n\treverse_proxy "+addr, "\tetag {\n\t\tverify cache\n\t}\n\treverse_proxy "+addr)
	for i, name := range []string{"verify upstream", "verify cache"} {
		url := bases[i] + "/doc"
		alice, bob := "Authorization: Bearer alice", "Authorization: Bearer bob"
		ea, eb := wrGetETag(t, url, alice), wrGetETag(t, url, bob)
		if ea == eb {
			t.Fatalf("%s: both users got ETag %s for different bodies", name, ea)
		}
		n := writes.Load()
		wrProblem(t, name+": bob with alice's ETag", wrDo(t, http.MethodPut, url, "x", bob, "If-Match: "+ea), http.StatusPreconditionFailed)
		if writes.Load() != n {
			t.Fatalf("%s: bob's write with alice's ETag was forwarded", name)
		}
		if r := wrDo(t, http.MethodPut, url, "edited by alice "+name, alice, "If-Match: "+ea); r.status != http.StatusNoContent {
			t.Fatalf("%s: alice's write: %d %s", name, r.status, r.body)
		}
		r := wrDo(t, http.MethodPut, url, "edited by bob", bob, "If-Match: "+eb)
		wrProblem(t, name+": bob's write after alice's", r, http.StatusPreconditionFailed)
		if want := wrGetETag(t, url, bob); r.header.Get("ETag") != want {
			t.Errorf("%s: 412 for bob carries %q, bob's GET gives %q", name, r.header.Get("ETag"), want)
		}
		if writes.Load() != n+1 {
			t.Fatalf("%s: %d writes forwarded, want 1", name, writes.Load()-n)
		}
	}
}

// TestCaddyETagWriteKeyOption: with a key that ignores the query string,
// writes to one path with different queries share one lock.
func TestCaddyETagWriteKeyOption(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tkey {http.request.host}{http.request.uri.path}\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/k", "v1", time.Now())
	e := wrGetETag(t, base+"/k?view=a")
	if e2 := wrGetETag(t, base+"/k?view=b"); e2 != e {
		t.Fatalf("the two URIs name different representations: %s, %s", e, e2)
	}
	entered, release := make(chan string, 4), make(chan struct{})
	up.mu.Lock()
	up.holdWrite = func(r *http.Request) error {
		entered <- r.URL.RawQuery
		<-release
		return nil
	}
	up.mu.Unlock()
	first := make(chan wrResp, 1)
	go func() {
		r, err := wrSend(context.Background(), http.MethodPut, base+"/k?view=a", strings.NewReader("v2"), "If-Match: "+e)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	if q := <-entered; q != "view=a" {
		t.Fatalf("first write upstream: %q", q)
	}
	second := make(chan wrResp, 1)
	go func() {
		r, err := wrSend(context.Background(), http.MethodPut, base+"/k?view=b", strings.NewReader("v3"), "If-Match: "+e)
		if err != nil {
			t.Error(err)
		}
		second <- r
	}()
	// The second write cannot reach the upstream while the first holds the
	// key; give it every chance to.
	select {
	case q := <-entered:
		t.Fatalf("a write to %q reached the upstream while the key was held", q)
	case <-time.After(200 * time.Millisecond):
	}
	if n := wrLockedKeys(t); n != 1 {
		t.Fatalf("%d keys locked, want the one shared key", n)
	}
	close(release)
	if r := <-first; r.status != http.StatusNoContent {
		t.Fatalf("first PUT: %d %s", r.status, r.body)
	}
	wrProblem(t, "second PUT with the same old ETag", <-second, http.StatusPreconditionFailed)
	if d, _ := up.doc("/k"); d != "v2" {
		t.Fatalf("document %q, want v2", d)
	}
	wrEventuallyUnlocked(t)
}

// TestCaddyETagWriteOverMaxBody: a resource too large to hash exists but
// has no ETag: If-Match * works, a tag cannot match, and the check stops
// reading the body early without breaking the write.
func TestCaddyETagWriteOverMaxBody(t *testing.T) {
	const size = 4 << 20
	var mu sync.Mutex
	var writes int
	large := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			if r.URL.Path == "/declared" {
				w.Header().Set("Content-Length", strconv.Itoa(size))
			}
			_, _ = io.Copy(w, io.LimitReader(&wrPattern{}, size))
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			writes++
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer large.Close()
	base := wrSites(t, "\tetag {\n\t\tmax_body 1MiB\n\t}\n\treverse_proxy "+strings.TrimPrefix(large.URL, "http://"))[0]
	for _, path := range []string{"/declared", "/chunked"} {
		mu.Lock()
		before := writes
		mu.Unlock()
		r := wrDo(t, http.MethodPut, base+path, "new", `If-Match: "anything"`)
		wrProblem(t, path+" If-Match tag", r, http.StatusPreconditionFailed)
		if r.header.Get("ETag") != "" {
			t.Errorf("%s: 412 carries ETag %q for a resource too large to hash", path, r.header.Get("ETag"))
		}
		for _, pre := range []string{"If-Match: *", `If-None-Match: "anything"`} {
			if r := wrDo(t, http.MethodPut, base+path, "new", pre); r.status != http.StatusNoContent {
				t.Fatalf("%s %s: %d %s", path, pre, r.status, r.body)
			}
		}
		wrProblem(t, path+" If-None-Match *", wrDo(t, http.MethodPut, base+path, "new", "If-None-Match: *"), http.StatusPreconditionFailed)
		mu.Lock()
		if writes-before != 2 {
			t.Errorf("%s: %d writes forwarded, want 2", path, writes-before)
		}
		mu.Unlock()
	}
	wrEventuallyUnlocked(t)
}
