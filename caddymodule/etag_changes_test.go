package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"golang.org/x/crypto/bcrypt"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/legacyapi"
	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// These tests run the change feed in real Caddy, in front of real
// upstreams on 127.0.0.1, and read it with a real SSE client.

// feedChange is one notification of the change feed.
type feedChange struct {
	Type   string  `json:"type"`
	Path   string  `json:"path"`
	ETag   *string `json:"etag"`
	Method string  `json:"method"`
	id     string  // the id of the event that carried it
}

func (c feedChange) String() string {
	etag := "null"
	if c.ETag != nil {
		etag = *c.ETag
	}
	return c.Type + " " + c.Path + " " + etag + " " + c.Method
}

// changesUntil reads the stream's payload events until a change to the
// path last arrives, and returns every change read. Any other event type
// fails the test.
func changesUntil(t *testing.T, s *ssetest.Stream, last string) []feedChange {
	t.Helper()
	var all []feedChange
	deadline := time.Now().Add(30 * time.Second)
	for !slices.ContainsFunc(all, func(c feedChange) bool { return c.Path == last }) {
		ev, err := s.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for a change of %s: %v; received %v", last, err, all)
		}
		if ev.Type != "" {
			t.Fatalf("unexpected event %q: %s", ev.Type, ev.Data)
		}
		all = append(all, decodeChanges(t, ev)...)
	}
	return all
}

func decodeChanges(t *testing.T, ev ssetest.Event) []feedChange {
	t.Helper()
	var cs []feedChange
	if err := json.Unmarshal([]byte(ev.Data), &cs); err != nil {
		t.Fatalf("event data %q: %v", ev.Data, err)
	}
	for i := range cs {
		cs[i].id = ev.ID
	}
	return cs
}

func changeStrings(cs []feedChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

// feedDo sends a request with "Name: value" header lines and returns the
// response with its body read.
func feedDo(t *testing.T, method, u, body string, header ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	res, b := readDo(t, method, u, rd, header...)
	return res, string(b)
}

// countingHandler counts the requests that reach h.
type countingHandler struct {
	h    http.Handler
	mu   sync.Mutex
	seen []string
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.seen = append(c.seen, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *countingHandler) saw(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.seen, func(s string) bool { return strings.HasSuffix(s, " "+path) })
}

func startLegacy(t *testing.T) (*countingHandler, string) {
	t.Helper()
	up := &countingHandler{h: legacyapi.New()}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	testutil.Must(t, err)
	return up, u.Host
}

// TestCaddyETagChangesTypes writes through the gateway in front of the
// legacy API and reads every kind of change from the feed: a POST's 201
// under its Location, a PUT that creates, a PUT and a PATCH that update
// (with the ETag a GET then gives), a DELETE. The feed's own requests
// never reach the upstream; other methods on its path are 405; a reload
// ends the stream cleanly.
func TestCaddyETagChangesTypes(t *testing.T) {
	up, addr := startLegacy(t)
	site := "\tetag {\n\t\tchanges /changes {\n\t\t\tbatch 10ms\n\t\t}\n\t}\n\treverse_proxy " + addr
	base := startReadCaddy(t, site)
	s := ssetest.MustOpen(t, testutil.Client(), base+"/changes", nil)
	if h := s.Resp.Header; h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" || h.Get("Etag") != "" {
		t.Fatalf("stream header %v", h)
	}

	res, _ := feedDo(t, http.MethodPost, base+"/items", `{"name":"gizmo"}`, "Content-Type: application/json")
	if res.StatusCode != 201 || res.Header.Get("Location") != "/items/3" {
		t.Fatalf("POST: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = feedDo(t, http.MethodPut, base+"/items/9", `{"name":"new"}`, "If-None-Match: *")
	if res.StatusCode != 201 {
		t.Fatalf("create-only PUT: %d", res.StatusCode)
	}
	created, _ := feedDo(t, http.MethodGet, base+"/items/9", "")
	cur, _ := feedDo(t, http.MethodGet, base+"/items/1", "")
	res, _ = feedDo(t, http.MethodPut, base+"/items/1?note=x", `{"name":"widget","count":5}`, "If-Match: "+cur.Header.Get("Etag"))
	if res.StatusCode != 200 || res.Header.Get("Etag") != "" {
		t.Fatalf("PUT: %d ETag %q (the API reformats what it stores: no ETag on the answer)", res.StatusCode, res.Header.Get("Etag"))
	}
	afterPut, _ := feedDo(t, http.MethodGet, base+"/items/1", "")
	patched, _ := feedDo(t, http.MethodPatch, base+"/items/1", `{"count":6}`,
		"Content-Type: application/merge-patch+json", "If-Match: "+afterPut.Header.Get("Etag"))
	if patched.StatusCode != 200 || patched.Header.Get("Etag") == "" {
		t.Fatalf("PATCH: %d ETag %q", patched.StatusCode, patched.Header.Get("Etag"))
	}
	if res, _ := feedDo(t, http.MethodDelete, base+"/items/2", ""); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d", res.StatusCode)
	}

	got := changeStrings(changesUntil(t, s, "/items/2"))
	want := []string{
		"resource_created /items/3 null POST",
		"resource_created /items/9 " + created.Header.Get("Etag") + " PUT",
		"resource_updated /items/1 " + afterPut.Header.Get("Etag") + " PUT",
		"resource_updated /items/1 " + patched.Header.Get("Etag") + " PATCH",
		"resource_removed /items/2 null DELETE",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("feed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if up.saw("/changes") {
		t.Fatal("a request of the feed reached the upstream")
	}

	for _, method := range []string{http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		res, body := feedDo(t, method, base+"/changes", "")
		if res.StatusCode != 405 || res.Header.Get("Allow") != "GET" || (method != http.MethodHead && !strings.Contains(body, `"status":405`)) {
			t.Errorf("%s /changes: %d Allow %q %s", method, res.StatusCode, res.Header.Get("Allow"), body)
		}
	}
	if up.saw("/changes") {
		t.Fatal("a request of the feed reached the upstream")
	}
	if res, body := feedDo(t, http.MethodGet, base+"/changes?prefix=items", ""); res.StatusCode != 400 || !strings.Contains(body, "prefix") {
		t.Errorf("GET /changes?prefix=items: %d %s", res.StatusCode, body)
	}

	// A reload ends the stream cleanly.
	testutil.Load(t, strings.ReplaceAll(":{port} {\n\tbind 127.0.0.1\n"+site+"\n}\n", "{port}", strings.TrimPrefix(base, "http://127.0.0.1:")))
	if _, ended := s.Ended(30 * time.Second); !ended {
		t.Fatal("the stream did not end on reload")
	}
	if err := s.Err(); err != io.EOF || !slices.Contains(s.Comments(), ": closing") {
		t.Fatalf("the stream ended with %v and comments %q, want a clean end after \": closing\"", err, s.Comments())
	}
}

// startFeedSite runs the etag handler with a change feed at /changes
// whose block holds opts, in front of a revUpstream.
func startFeedSite(t *testing.T, opts string, etagOpts ...string) (*revUpstream, string) {
	t.Helper()
	up := startRevUpstream(t)
	block := "\tetag {\n"
	for _, o := range etagOpts {
		block += "\t\t" + o + "\n"
	}
	block += "\t\tchanges /changes {\n" + opts + "\t\t}\n\t}\n"
	return up, startReadCaddy(t, block+"\treverse_proxy "+up.addr)
}

func put(t *testing.T, base, path string, header ...string) int {
	t.Helper()
	res, _ := feedDo(t, http.MethodPut, base+path, "x", header...)
	return res.StatusCode
}

// TestCaddyETagChangesPrefix: a stream sees the changes whose path starts
// with one of its prefix parameters, or every change without one.
func TestCaddyETagChangesPrefix(t *testing.T) {
	_, base := startFeedSite(t, "\t\t\tbatch 10ms\n")
	client := testutil.Client()
	streams := map[string]*ssetest.Stream{}
	for _, q := range []string{"", "?prefix=/a/1", "?prefix=/b/&prefix=/a/1", "?prefix=/a/1&prefix=/a/", "?prefix="} {
		streams[q] = ssetest.MustOpen(t, client, base+"/changes"+q, nil)
	}
	for _, p := range []string{"/c", "/b/1", "/a/10", "/bb", "/a/2", "/a/1"} {
		if s := put(t, base, p); s != 204 {
			t.Fatalf("PUT %s: %d", p, s)
		}
	}
	want := map[string][]string{
		"":                        {"/c", "/b/1", "/a/10", "/bb", "/a/2", "/a/1"},
		"?prefix=/a/1":            {"/a/10", "/a/1"},
		"?prefix=/b/&prefix=/a/1": {"/b/1", "/a/10", "/a/1"},
		"?prefix=/a/1&prefix=/a/": {"/a/10", "/a/2", "/a/1"},
		"?prefix=":                {"/c", "/b/1", "/a/10", "/bb", "/a/2", "/a/1"},
	}
	for q, s := range streams {
		var paths []string
		for _, c := range changesUntil(t, s, "/a/1") {
			paths = append(paths, c.Path)
		}
		if !slices.Equal(paths, want[q]) {
			t.Errorf("/changes%s saw %q, want %q", q, paths, want[q])
		}
	}
}

// TestCaddyETagChangesReplay: a client that reconnects with the last id
// it saw is sent exactly the changes made while it was away, once and in
// order, then the new ones; one whose id the history no longer holds, or
// never held, is sent an overflow first.
func TestCaddyETagChangesReplay(t *testing.T) {
	_, base := startFeedSite(t, "\t\t\tbatch 1ms\n\t\t\thistory 8\n")
	client := testutil.Client()
	live := ssetest.MustOpen(t, client, base+"/changes", nil)
	write := func(path string) feedChange {
		t.Helper()
		if s := put(t, base, path); s != 204 {
			t.Fatalf("PUT %s: %d", path, s)
		}
		// One write, one event: wait for it so that the next write is in a
		// frame of its own.
		cs := changesUntil(t, live, path)
		return cs[len(cs)-1]
	}

	first := ssetest.MustOpen(t, client, base+"/changes", nil)
	var seen []feedChange
	for i := 1; i <= 3; i++ {
		seen = append(seen, write(fmt.Sprintf("/r/%d", i)))
	}
	if got := changesUntil(t, first, "/r/3"); len(got) != 3 {
		t.Fatalf("first connection saw %v", got)
	}
	first.Close()
	var missed []string
	for i := 4; i <= 6; i++ {
		write(fmt.Sprintf("/r/%d", i))
		missed = append(missed, fmt.Sprintf("/r/%d", i))
	}

	again := ssetest.MustOpen(t, client, base+"/changes", http.Header{"Last-Event-ID": {seen[2].id}})
	write("/r/7")
	var paths []string
	lastID := seen[2].id
	for _, c := range changesUntil(t, again, "/r/7") {
		paths = append(paths, c.Path)
		if n, _ := strconv.ParseUint(c.id, 10, 64); n <= mustUint(t, lastID) {
			t.Errorf("id %s after %s", c.id, lastID)
		}
		lastID = c.id
	}
	if want := append(missed, "/r/7"); !slices.Equal(paths, want) {
		t.Fatalf("after reconnecting: %q, want %q", paths, want)
	}

	// History holds 8 frames; 7 more writes push /r/1's out of it.
	for i := 8; i <= 14; i++ {
		write(fmt.Sprintf("/r/%d", i))
	}
	for _, id := range []string{seen[0].id, "12345", "not a number"} {
		s := ssetest.MustOpen(t, client, base+"/changes", http.Header{"Last-Event-ID": {id}})
		ev, err := s.Next(30 * time.Second)
		if err != nil || ev.Type != "overflow" || ev.Data != `{"reason":"history"}` || ev.ID == "" {
			t.Fatalf("Last-Event-ID %s: first event %+v (%v), want an overflow for history", id, ev, err)
		}
		write("/r/after")
		if cs := changesUntil(t, s, "/r/after"); len(cs) != 1 {
			t.Fatalf("after the overflow: %v, want only the new change", cs)
		}
		s.Close()
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	testutil.Must(t, err)
	return n
}

// TestCaddyETagChangesRefusedWrites: writes the gateway refuses (503 after
// lock_wait, 428, 412, 400, a failed check) or the upstream fails report
// nothing; only the successful writes are in the feed.
func TestCaddyETagChangesRefusedWrites(t *testing.T) {
	_, base := startFeedSite(t, "\t\t\tbatch 1ms\n", "methods PUT", "require_precondition", "lock_wait 200ms")
	s := ssetest.MustOpen(t, testutil.Client(), base+"/changes", nil)

	// A write that waited lock_wait for the lock: 503, nothing reported,
	// while the slow write that held the lock is.
	slow := make(chan int, 1)
	go func() {
		res, err := testutil.Client().Do(mustRequest(t, http.MethodPut, base+"/held", "If-Match: *", "X-Hold: 2s"))
		if err != nil {
			slow <- 0
			return
		}
		res.Body.Close()
		slow <- res.StatusCode
	}()
	time.Sleep(500 * time.Millisecond) // the slow write holds the lock by now
	if res, body := feedDo(t, http.MethodPut, base+"/held", "x", "If-Match: *"); res.StatusCode != 503 {
		t.Fatalf("PUT behind a held lock: %d %s, want 503", res.StatusCode, body)
	}
	if got := <-slow; got != 204 {
		t.Fatalf("the slow PUT: %d", got)
	}
	if got := changeStrings(changesUntil(t, s, "/held")); len(got) != 1 {
		t.Fatalf("feed %q, want one change of /held", got)
	}
	cases := []struct {
		method, path string
		header       []string
		status       int
	}{
		{http.MethodPut, "/doc", nil, 428},
		{http.MethodPut, "/doc", []string{`If-Match: "stale"`}, 412},
		{http.MethodPut, "/doc", []string{"If-Match: abc"}, 400},
		{http.MethodPut, "/status/503/doc", []string{"If-Match: *"}, 502},
		{http.MethodPut, "/status/504/doc", []string{"If-Match: *"}, 504},
		{http.MethodDelete, "/status/500/doc", nil, 500},
		{http.MethodPost, "/status/503/doc", nil, 503},
		{http.MethodPatch, "/status/409/doc", nil, 409},
		{http.MethodPut, "/status/304/doc", []string{"If-Match: *"}, 502},
	}
	for _, c := range cases {
		res, body := feedDo(t, c.method, base+c.path, "x", c.header...)
		if res.StatusCode != c.status {
			t.Fatalf("%s %s %q: %d %s, want %d", c.method, c.path, c.header, res.StatusCode, body, c.status)
		}
	}
	if got := put(t, base, "/ok", "If-Match: *"); got != 204 {
		t.Fatalf("PUT /ok: %d", got)
	}
	if got := changeStrings(changesUntil(t, s, "/ok")); len(got) != 1 {
		t.Fatalf("feed %q, want only the change of /ok", got)
	}
}

// TestCaddyETagChangesWriteOrder runs writers on one resource at once: the
// feed gives their changes in the order the upstream applied them, which
// is the order of their 2xx answers, each once, with the ETag of the
// version each write made.
func TestCaddyETagChangesWriteOrder(t *testing.T) {
	up, base := startFeedSite(t, "\t\t\tbatch 5ms\n")
	s := ssetest.MustOpen(t, testutil.Client(), base+"/changes", nil)
	const writers, each = 8, 10
	version := map[string]int{} // ETag of "/doc version N" → N
	for v := 1; v <= writers*each; v++ {
		version[hashing.XXH3.Sum([]byte(revBody("/doc ", v)))] = v
	}
	var answered sync.Map // version → answered with it
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			client := testutil.Client()
			for range each {
				req, _ := http.NewRequest(http.MethodPut, base+"/doc", strings.NewReader("x"))
				req.Header.Set("If-Match", "*")
				res, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != 204 {
					t.Errorf("PUT: %d", res.StatusCode)
					return
				}
				answered.Store(res.Header.Get("X-Version"), true)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if s := put(t, base, "/end"); s != 204 {
		t.Fatalf("PUT /end: %d", s)
	}
	var got []int
	for _, c := range changesUntil(t, s, "/end") {
		if c.Path != "/doc" {
			continue
		}
		if c.ETag == nil {
			t.Fatalf("change without ETag: %v", c)
		}
		got = append(got, version[*c.ETag])
	}
	want := make([]int, writers*each)
	for i := range want {
		want[i] = i + 1
		if _, ok := answered.Load(strconv.Itoa(i + 1)); !ok {
			t.Fatalf("no writer was answered version %d", i+1)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the feed gave versions %v, want 1..%d in order", got, writers*each)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.version["/doc"] != writers*each {
		t.Fatalf("the upstream holds version %d", up.version["/doc"])
	}
}

// TestCaddyETagChangesMaxSubscribers: the stream past max_subscribers is
// refused with 503 and Retry-After; one that leaves frees its place.
func TestCaddyETagChangesMaxSubscribers(t *testing.T) {
	_, base := startFeedSite(t, "\t\t\tmax_subscribers 1\n")
	client := testutil.Client()
	s := ssetest.MustOpen(t, client, base+"/changes", nil)
	res, body := feedDo(t, http.MethodGet, base+"/changes", "")
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.Contains(body, "max_subscribers") {
		t.Fatalf("second stream: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	s.Close()
	var opened atomic.Bool
	testutil.Eventually(t, "the place is free again", func() bool {
		s, _, err := ssetest.Open(client, base+"/changes", nil)
		if err == nil {
			opened.Store(true)
			s.Close()
		}
		return opened.Load()
	})
}

// TestCaddyETagChangesBasicAuth: basic_auth in front of etag protects the
// feed as it protects the API.
func TestCaddyETagChangesBasicAuth(t *testing.T) {
	up := startRevUpstream(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	testutil.Must(t, err)
	base := startReadCaddy(t, "\tbasic_auth {\n\t\talice "+string(hash)+"\n\t}\n"+
		"\tetag {\n\t\tchanges /changes {\n\t\t\tbatch 1ms\n\t\t}\n\t}\n\treverse_proxy "+up.addr)
	client := testutil.Client()

	res, _ := feedDo(t, http.MethodGet, base+"/changes", "")
	if res.StatusCode != 401 || res.Header.Get("Www-Authenticate") == "" {
		t.Fatalf("without credentials: %d WWW-Authenticate %q", res.StatusCode, res.Header.Get("Www-Authenticate"))
	}
	if _, _, err := ssetest.Open(client, base+"/changes", http.Header{"Authorization": {"Basic " + basic("alice", "wrong")}}); err == nil {
		t.Fatal("a stream opened with a wrong password")
	}
	auth := "Authorization: Basic " + basic("alice", "s3cret")
	s := ssetest.MustOpen(t, client, base+"/changes", http.Header{"Authorization": {"Basic " + basic("alice", "s3cret")}})
	if res, _ := feedDo(t, http.MethodPut, base+"/doc", "x"); res.StatusCode != 401 {
		t.Fatalf("PUT without credentials: %d", res.StatusCode)
	}
	if res, _ := feedDo(t, http.MethodPut, base+"/doc", "x", auth); res.StatusCode != 204 {
		t.Fatalf("PUT with credentials: %d", res.StatusCode)
	}
	if got := changeStrings(changesUntil(t, s, "/doc")); len(got) != 1 || !strings.HasPrefix(got[0], "resource_updated /doc ") {
		t.Fatalf("feed %q", got)
	}
}

func mustRequest(t *testing.T, method, u string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader("x"))
	testutil.Must(t, err)
	for _, h := range header {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	return req
}

func basic(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestCaddyETagChangesHandleErrors: with handle_errors, the feed's
// refusals reach the site's error routes with their status, keeping Allow
// and Retry-After; a site on the same server without handle_errors still
// gets problem documents.
func TestCaddyETagChangesHandleErrors(t *testing.T) {
	up := startRevUpstream(t)
	block := "\tetag {\n\t\tchanges /changes {\n\t\t\tmax_subscribers 1\n\t\t}\n\t}\n\treverse_proxy " + up.addr + "\n"
	base := testutil.Start(t, "http://rendered.test:{port} {\n\tbind 127.0.0.1\n\thandle_errors {\n\t\trespond \"rendered {err.status_code}: {err.message}\"\n\t}\n"+block+"}\n"+
		"http://plain.test:{port} {\n\tbind 127.0.0.1\n"+block+"}\n")
	host := strings.TrimPrefix(base, "http://127.0.0.1")
	for _, site := range []string{"rendered.test", "plain.test"} {
		holdStream(t, base, site+host, "/changes")
	}
	for _, c := range []struct {
		method, query string
		status        int
		keep          string
	}{
		{http.MethodPost, "", 405, "Allow"},
		{http.MethodGet, "?prefix=items", 400, ""},
		{http.MethodGet, "", 503, "Retry-After"}, // max_subscribers: the held stream
	} {
		for _, site := range []string{"rendered.test", "plain.test"} {
			res, body := feedAs(t, site+host, c.method, base+"/changes"+c.query)
			if res.StatusCode != c.status || (c.keep != "" && res.Header.Get(c.keep) == "") {
				t.Errorf("%s %s%s on %s: %d %v", c.method, "/changes", c.query, site, res.StatusCode, res.Header)
			}
			rendered := strings.HasPrefix(body, fmt.Sprintf("rendered %d: ", c.status))
			problem := strings.Contains(body, fmt.Sprintf(`"status":%d`, c.status))
			if (site == "rendered.test") != rendered || (site == "plain.test") != problem {
				t.Errorf("%s /changes%s on %s: body %q", c.method, c.query, site, body)
			}
		}
	}
}

// feedAs sends a request to u with the given Host.
func feedAs(t *testing.T, host, method, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	testutil.Must(t, err)
	req.Host = host
	res, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	testutil.Must(t, err)
	return res, string(b)
}

// holdStream opens a stream of path with the given Host and keeps it open
// until the test ends, once its first comment has arrived.
func holdStream(t *testing.T, base, host, path string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	testutil.Must(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	testutil.Must(t, err)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	testutil.Must(t, err)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s on %s: %d", path, host, res.StatusCode)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("GET %s on %s: first line %q, %v", path, host, line, err)
	}
	_ = c.SetDeadline(time.Time{})
}
