package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/problem"
)

// wrStore is the rest of the route in the write tests: a store of plain-text
// documents that knows nothing of preconditions and records every request
// that reaches it. before, when set, runs first and may block, fail or
// panic, so a test can hold a request where it wants it.
type wrStore struct {
	mu     sync.Mutex
	docs   map[string]string
	seen   []wrSeen
	before func(r *http.Request) error
}

type wrSeen struct {
	method, path string
	header       http.Header
	body         string
}

func newWrStore(docs map[string]string) *wrStore {
	s := &wrStore{docs: map[string]string{}}
	for k, v := range docs {
		s.docs[k] = v
	}
	return s
}

func (s *wrStore) setBefore(f func(r *http.Request) error) {
	s.mu.Lock()
	s.before = f
	s.mu.Unlock()
}

func (s *wrStore) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	hook := s.before
	s.mu.Unlock()
	if hook != nil {
		if err := hook(r); err != nil {
			return err
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	// Decide under the lock, answer outside it: the gateway reads the
	// resource again from within WriteHeader.
	s.mu.Lock()
	s.seen = append(s.seen, wrSeen{r.Method, r.URL.Path, r.Header.Clone(), string(body)})
	doc, ok := s.docs[r.URL.Path]
	status := http.StatusNoContent
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		status = http.StatusOK
		if !ok {
			status = http.StatusNotFound
		}
	case http.MethodPut:
		s.docs[r.URL.Path] = string(body)
		if !ok {
			status = http.StatusCreated
		}
	case http.MethodDelete:
		if !ok {
			status = http.StatusNotFound
		}
		delete(s.docs, r.URL.Path)
	default:
		status = http.StatusMethodNotAllowed
	}
	s.mu.Unlock()
	switch {
	case status == http.StatusOK:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, doc)
	case status >= 400:
		http.Error(w, http.StatusText(status), status)
	default:
		w.WriteHeader(status)
	}
	return nil
}

// count returns how many requests with method reached path.
func (s *wrStore) count(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.seen {
		if q.method == method && q.path == path {
			n++
		}
	}
	return n
}

func (s *wrStore) last(method, path string) (wrSeen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.seen) - 1; i >= 0; i-- {
		if q := s.seen[i]; q.method == method && q.path == path {
			return q, true
		}
	}
	return wrSeen{}, false
}

// wrGateway serves m in front of next on a real 127.0.0.1 listener.
func wrGateway(t *testing.T, cfg Config, next Handler) (*Middleware, string) {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.ServeHTTP(w, r, next); err != nil {
			problem.Write(w, problem.New(http.StatusBadGateway, err.Error()))
		}
	}))
	t.Cleanup(srv.Close)
	return m, srv.URL
}

type wrResult struct {
	status int
	header http.Header
	body   string
}

func wrDo(t *testing.T, ctx context.Context, method, url, body string, hdr ...string) (wrResult, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return wrResult{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return wrResult{}, err
	}
	return wrResult{res.StatusCode, res.Header, string(b)}, nil
}

func wrMust(t *testing.T, method, url, body string, hdr ...string) wrResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := wrDo(t, ctx, method, url, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// wrETag GETs url through the gateway and returns its ETag.
func wrETag(t *testing.T, url string) string {
	t.Helper()
	r := wrMust(t, http.MethodGet, url, "")
	if r.status != http.StatusOK || r.header.Get("ETag") == "" {
		t.Fatalf("GET %s: %d, ETag %q", url, r.status, r.header.Get("ETag"))
	}
	return r.header.Get("ETag")
}

// wrEventually polls cond for up to 10s.
func wrEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// wrRefs counts the holders and waiters of every key in l.
func wrRefs(l *Locks) int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, k := range s.m {
			n += k.refs
		}
		s.mu.Unlock()
	}
	return n
}

// wrHold makes PUTs to path wait in the store until release is closed (or
// the request ends), signalling entered as each one arrives.
func wrHold(s *wrStore, path string) (entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, 16), make(chan struct{})
	s.setBefore(func(r *http.Request) error {
		if r.Method != http.MethodPut || r.URL.Path != path {
			return nil
		}
		// Read the body first, as a real upstream would: net/http notices
		// that an HTTP/1.1 client went away only once the body is consumed.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-r.Context().Done():
			return r.Context().Err()
		}
	})
	return entered, release
}

func wrWait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestWriteWaiterThatLeavesGivesUpItsPlace(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	m, base := wrGateway(t, DefaultConfig(), s)
	etag := wrETag(t, base+"/a")
	entered, release := wrHold(s, "/a")

	first := make(chan wrResult, 1)
	go func() {
		r, err := wrDo(t, context.Background(), http.MethodPut, base+"/a", "v2", "If-Match", etag)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	wrWait(t, entered, "the first PUT to reach the store")

	// The waiter has no body: net/http notices that an HTTP/1.1 client
	// went away only once the request body has been consumed, and a
	// waiting write has not read its body yet.
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := wrDo(t, ctx, http.MethodDelete, base+"/a", "", "If-Match", etag)
		second <- err
	}()
	wrEventually(t, "the second PUT waits for the lock", func() bool { return wrRefs(m.locks) == 2 })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second PUT: got %v, want context.Canceled", err)
	}
	wrEventually(t, "the waiter gives its place up", func() bool { return wrRefs(m.locks) == 1 })
	if n := m.LockedKeys(); n != 1 {
		t.Fatalf("LockedKeys while the first PUT holds /a = %d, want 1", n)
	}

	close(release)
	if r := <-first; r.status != http.StatusNoContent {
		t.Fatalf("first PUT: %d %s", r.status, r.body)
	}
	wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
	if n := s.count(http.MethodDelete, "/a"); n != 0 {
		t.Fatalf("the store saw %d DELETEs, want 0: the abandoned one must not be forwarded", n)
	}
	// The key is usable again.
	if r := wrMust(t, http.MethodPut, base+"/a", "v4", "If-Match", wrETag(t, base+"/a")); r.status != http.StatusNoContent {
		t.Fatalf("PUT after: %d %s", r.status, r.body)
	}
}

func TestWriteHolderThatLeavesReleasesTheLock(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	m, base := wrGateway(t, DefaultConfig(), s)
	etag := wrETag(t, base+"/a")
	entered, release := wrHold(s, "/a")
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := wrDo(t, ctx, http.MethodPut, base+"/a", "v2", "If-Match", etag)
		done <- err
	}()
	wrWait(t, entered, "the PUT to reach the store")
	if n := m.LockedKeys(); n != 1 {
		t.Fatalf("LockedKeys while the PUT is upstream = %d, want 1", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("PUT: got %v, want context.Canceled", err)
	}
	wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
	s.setBefore(nil)
	if r := wrMust(t, http.MethodPut, base+"/a", "v3", "If-Match", etag); r.status != http.StatusNoContent {
		t.Fatalf("PUT after the client left: %d %s", r.status, r.body)
	}
}

func TestWriteLockReleasedOnPanic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		when  func(r *http.Request, gets int) bool // gets counts GETs so far, this one included
		value any
	}{
		{"in the check's GET", func(r *http.Request, gets int) bool { return r.Method == http.MethodGet }, "boom"},
		{"in the forwarded PUT", func(r *http.Request, _ int) bool { return r.Method == http.MethodPut }, "boom"},
		{"in the GET after the write", func(r *http.Request, gets int) bool { return r.Method == http.MethodGet && gets == 2 }, "boom"},
		{"with ErrAbortHandler", func(r *http.Request, _ int) bool { return r.Method == http.MethodPut }, http.ErrAbortHandler},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWrStore(map[string]string{"/a": "v1"})
			m, err := New(DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			etag := wrServe(t, m, s, http.MethodGet, "/a", "").Header().Get("Etag")
			var gets int
			s.setBefore(func(r *http.Request) error {
				if r.Method == http.MethodGet {
					gets++
				}
				if tc.when(r, gets) {
					panic(tc.value)
				}
				return nil
			})
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				wrServe(t, m, s, http.MethodPut, "/a", "v2", "If-Match", etag)
			}()
			if recovered != tc.value {
				t.Fatalf("recovered %v, want the handler's panic %v to propagate", recovered, tc.value)
			}
			if n := m.LockedKeys(); n != 0 {
				t.Fatalf("LockedKeys after the panic = %d, want 0", n)
			}
			// The next write to the key is not stuck behind a leaked lock.
			s.setBefore(nil)
			cur := wrServe(t, m, s, http.MethodGet, "/a", "").Header().Get("Etag")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := httptest.NewRequestWithContext(ctx, http.MethodPut, "http://gw/a", strings.NewReader("v3"))
			req.Header.Set("If-Match", cur)
			rec := httptest.NewRecorder()
			if err := m.ServeHTTP(rec, req, s); err != nil || rec.Code != http.StatusNoContent {
				t.Fatalf("PUT after the panic: %d, %v", rec.Code, err)
			}
		})
	}
}

// wrServe runs one request through m in front of next, in this goroutine.
func wrServe(t *testing.T, m *Middleware, next Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://gw"+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	if err := m.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return rec
}

func TestWriteDifferentKeysProceedInParallel(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "a1", "/b": "b1"})
	m, base := wrGateway(t, DefaultConfig(), s)
	ea, eb := wrETag(t, base+"/a"), wrETag(t, base+"/b")
	entered, release := wrHold(s, "/a")

	first := make(chan wrResult, 1)
	go func() {
		r, err := wrDo(t, context.Background(), http.MethodPut, base+"/a", "a2", "If-Match", ea)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	wrWait(t, entered, "the PUT to /a to reach the store")

	// /a is held; /b must not wait for it. wrMust gives up after 30s.
	if r := wrMust(t, http.MethodPut, base+"/b", "b2", "If-Match", eb); r.status != http.StatusNoContent {
		t.Fatalf("PUT /b while /a is held: %d %s", r.status, r.body)
	}
	if r := wrMust(t, http.MethodDelete, base+"/b", "", "If-Match", wrETag(t, base+"/b")); r.status != http.StatusNoContent {
		t.Fatalf("DELETE /b while /a is held: %d %s", r.status, r.body)
	}
	select {
	case <-first:
		t.Fatal("PUT /a finished before it was released")
	default:
	}
	wrEventually(t, "only /a is locked", func() bool { return m.LockedKeys() == 1 })

	close(release)
	if r := <-first; r.status != http.StatusNoContent {
		t.Fatalf("PUT /a: %d %s", r.status, r.body)
	}
	wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
}

func TestWriteSameKeyIsSerialised(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	m, base := wrGateway(t, DefaultConfig(), s)
	entered, release := wrHold(s, "/a")

	// An unconditional write takes the lock too, so a conditional one must
	// wait for it and then see its result.
	first := make(chan wrResult, 1)
	go func() {
		r, err := wrDo(t, context.Background(), http.MethodPut, base+"/a", "v2")
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	wrWait(t, entered, "the first PUT to reach the store")
	etagV1 := hashing.XXH3.Sum([]byte("v1"))
	second := make(chan wrResult, 1)
	go func() {
		r, err := wrDo(t, context.Background(), http.MethodPut, base+"/a", "v3", "If-Match", etagV1)
		if err != nil {
			t.Error(err)
		}
		second <- r
	}()
	wrEventually(t, "the second PUT waits for the lock", func() bool { return wrRefs(m.locks) == 2 })
	if n := s.count(http.MethodGet, "/a"); n != 0 {
		t.Fatalf("the store saw %d GETs of /a while the lock was held, want 0", n)
	}
	close(release)
	if r := <-first; r.status != http.StatusNoContent {
		t.Fatalf("first PUT: %d %s", r.status, r.body)
	}
	r := <-second
	if r.status != http.StatusPreconditionFailed || r.header.Get("ETag") != hashing.XXH3.Sum([]byte("v2")) {
		t.Fatalf("second PUT with v1's ETag: %d ETag %q, want 412 with v2's ETag", r.status, r.header.Get("ETag"))
	}
	if n := s.count(http.MethodPut, "/a"); n != 1 {
		t.Fatalf("the store saw %d PUTs, want 1", n)
	}
	wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
}

func TestWriteCheckFailureIsNotForwarded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		get    func(w http.ResponseWriter) error
		status int
	}{
		{"connection error", func(http.ResponseWriter) error {
			return errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
		}, http.StatusBadGateway},
		{"timeout", func(http.ResponseWriter) error {
			return fmt.Errorf("reading response headers: %w", context.DeadlineExceeded)
		}, http.StatusGatewayTimeout},
		{"500", func(w http.ResponseWriter) error { w.WriteHeader(500); return nil }, http.StatusBadGateway},
		{"503", func(w http.ResponseWriter) error { w.WriteHeader(503); return nil }, http.StatusBadGateway},
		{"504", func(w http.ResponseWriter) error { w.WriteHeader(504); return nil }, http.StatusGatewayTimeout},
		{"302", func(w http.ResponseWriter) error {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
			return nil
		}, http.StatusBadGateway},
		{"401 relayed", func(w http.ResponseWriter) error {
			w.Header().Set("WWW-Authenticate", `Basic realm="api"`)
			w.WriteHeader(401)
			return nil
		}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWrStore(map[string]string{"/a": "v1"})
			etag := hashing.XXH3.Sum([]byte("v1"))
			next := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				if r.Method == http.MethodGet {
					return tc.get(w)
				}
				return s.ServeHTTP(w, r)
			})
			m, base := wrGateway(t, DefaultConfig(), next)
			for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
				for _, h := range [][]string{{"If-Match", etag}, {"If-None-Match", "*"}, {"If-Unmodified-Since", time.Now().UTC().Format(http.TimeFormat)}} {
					r := wrMust(t, method, base+"/a", "v2", h...)
					wrCheckProblem(t, r, tc.status)
					if tc.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
						t.Errorf("%s %v: the 401's WWW-Authenticate was not relayed", method, h)
					}
					if r.header.Get("ETag") != "" {
						t.Errorf("%s %v: ETag %q on a failed check", method, h, r.header.Get("ETag"))
					}
				}
			}
			for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
				if n := s.count(method, "/a"); n != 0 {
					t.Errorf("%d %ss reached the store after a failed check", n, method)
				}
			}
			if n := m.LockedKeys(); n != 0 {
				t.Errorf("LockedKeys = %d, want 0", n)
			}
		})
	}
}

// wrCheckProblem asserts r is an RFC 9457 problem with status.
func wrCheckProblem(t *testing.T, r wrResult, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q, want %s", ct, problem.ContentType)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p["type"] != "about:blank" || p["title"] != http.StatusText(status) || p["status"] != float64(status) || p["detail"] == "" || p["detail"] == nil {
		t.Fatalf("problem body %s: want type, title, status %d and detail", r.body, status)
	}
	return p
}

func TestWriteForwardsWithoutConditionals(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	_, base := wrGateway(t, DefaultConfig(), s)
	etag := wrETag(t, base+"/a")
	lm := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	r := wrMust(t, http.MethodPut, base+"/a", "v2",
		"If-Match", etag, "If-None-Match", `"other"`, "If-Unmodified-Since", lm,
		"Authorization", "Bearer t", "Content-Type", "text/plain", "X-Custom", "kept")
	if r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	put, _ := s.last(http.MethodPut, "/a")
	if put.body != "v2" || put.header.Get("X-Custom") != "kept" || put.header.Get("Authorization") != "Bearer t" || put.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("forwarded PUT: body %q, header %v", put.body, put.header)
	}
	for _, f := range []string{"If-Match", "If-None-Match", "If-Unmodified-Since"} {
		if v := put.header.Values(f); len(v) != 0 {
			t.Errorf("forwarded PUT carries %s: %q", f, v)
		}
	}
	// The check's GET carried the client's headers but nothing conditional
	// and no body.
	s.mu.Lock()
	var check wrSeen
	for _, q := range s.seen {
		if q.method == http.MethodGet && q.header.Get("Authorization") == "Bearer t" {
			check = q
			break
		}
	}
	s.mu.Unlock()
	if check.method == "" {
		t.Fatal("no internal GET with the client's Authorization reached the store")
	}
	if check.body != "" || check.header.Get("X-Custom") != "kept" {
		t.Errorf("internal GET: body %q, header %v", check.body, check.header)
	}
	for _, f := range []string{"If-Match", "If-None-Match", "If-Unmodified-Since", "Content-Type"} {
		if v := check.header.Values(f); len(v) != 0 {
			t.Errorf("internal GET carries %s: %q", f, v)
		}
	}
	if got, want := r.header.Get("ETag"), wrETag(t, base+"/a"); got != want {
		t.Errorf("PUT's ETag %q, following GET's %q", got, want)
	}
}

// TestCacheStaleFillCannotLand replays the race a slow read runs against a
// write: the read passed fill's generation check, then the write
// invalidated, then ristretto applied the read's Set. The entry must be
// ignored.
func TestCacheStaleFillCannotLand(t *testing.T) {
	c, err := newETagCache(1<<20, time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	rk := xxh3.HashString128("host/a")
	vk := variantOf(rk, nil, http.Header{})

	gen := c.generation(rk)
	c.fill(rk, vk, gen, `"old"`, time.Time{}, http.Header{}, http.Header{})
	c.invalidate(rk)
	c.c.Wait()
	if e, ok := c.get(vk, c.generation(rk), http.Header{}); ok {
		t.Fatalf("an entry filled before the invalidation is served: %+v", e)
	}

	// A read that began before the write and fills after it is dropped.
	gen = c.generation(rk)
	c.invalidate(rk)
	c.fill(rk, vk, gen, `"old"`, time.Time{}, http.Header{}, http.Header{})
	c.c.Wait()
	if e, ok := c.get(vk, c.generation(rk), http.Header{}); ok {
		t.Fatalf("a fill from a read older than the write is served: %+v", e)
	}

	// A read after the write fills normally.
	gen = c.generation(rk)
	c.fill(rk, vk, gen, `"new"`, time.Time{}, http.Header{}, http.Header{})
	c.c.Wait()
	if e, ok := c.get(vk, c.generation(rk), http.Header{}); !ok || e.etag != `"new"` {
		t.Fatalf("fresh fill: got %+v, %v", e, ok)
	}
}

// TestVerifyCacheSlowReadRace runs the race end to end: a GET that read
// the old state answers only after a conditional PUT replaced it. The
// old ETag must not become usable again.
func TestVerifyCacheSlowReadRace(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	readOld, answer := make(chan struct{}), make(chan struct{})
	next := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("X-Slow") != "" {
			// Read the state now, answer later.
			s.mu.Lock()
			doc := s.docs[r.URL.Path]
			s.mu.Unlock()
			close(readOld)
			<-answer
			_, _ = io.WriteString(w, doc)
			return nil
		}
		return s.ServeHTTP(w, r)
	})
	cfg := DefaultConfig()
	cfg.Verify = VerifyCache
	m, base := wrGateway(t, cfg, next)

	oldTag := wrETag(t, base+"/a")
	slow := make(chan wrResult, 1)
	go func() {
		r, err := wrDo(t, context.Background(), http.MethodGet, base+"/a", "", "X-Slow", "1")
		if err != nil {
			t.Error(err)
		}
		slow <- r
	}()
	wrWait(t, readOld, "the slow GET to read the old state")
	put := wrMust(t, http.MethodPut, base+"/a", "v2", "If-Match", oldTag)
	if put.status != http.StatusNoContent || put.header.Get("ETag") == "" {
		t.Fatalf("PUT: %d ETag %q", put.status, put.header.Get("ETag"))
	}
	newTag := put.header.Get("ETag")
	close(answer)
	if r := <-slow; r.status != http.StatusOK || r.header.Get("ETag") != oldTag {
		t.Fatalf("slow GET: %d ETag %q, want 200 with the old ETag", r.status, r.header.Get("ETag"))
	}
	m.cache.c.Wait() // let ristretto apply whatever the slow GET set

	before := s.count(http.MethodPut, "/a")
	r := wrMust(t, http.MethodPut, base+"/a", "v3", "If-Match", oldTag)
	wrCheckProblem(t, r, http.StatusPreconditionFailed)
	if r.header.Get("ETag") != newTag {
		t.Fatalf("412's ETag %q, want %q", r.header.Get("ETag"), newTag)
	}
	if n := s.count(http.MethodPut, "/a"); n != before {
		t.Fatal("a PUT with the stale ETag was forwarded")
	}
	if r := wrMust(t, http.MethodPut, base+"/a", "v3", "If-Match", newTag); r.status != http.StatusNoContent {
		t.Fatalf("PUT with the new ETag: %d %s", r.status, r.body)
	}
}

// TestWriteRefusedBeforeUpload: a client that sends Expect: 100-continue
// with a stale ETag gets its 412 without uploading the body, because the
// gateway decides before it reads a byte of it.
func TestWriteRefusedBeforeUpload(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	_, base := wrGateway(t, DefaultConfig(), s)
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	var read atomic.Int64
	const size = 8 << 20
	body := &wrCountingReader{r: strings.NewReader(strings.Repeat("x", size)), n: &read}
	req, err := http.NewRequest(http.MethodPut, base+"/a", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("If-Match", `"stale"`)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wrCheckProblem(t, wrResult{res.StatusCode, res.Header, string(b)}, http.StatusPreconditionFailed)
	if n := read.Load(); n != 0 {
		t.Fatalf("the client sent %d bytes of a body the gateway refused", n)
	}
	if n := s.count(http.MethodPut, "/a"); n != 0 {
		t.Fatalf("the store saw %d PUTs", n)
	}
}

type wrCountingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *wrCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestWriteAfterWriteReadFails: when the read after a successful write
// fails, the write's own answer stands, without an ETag.
func TestWriteAfterWriteReadFails(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	var gets atomic.Int64
	next := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Method == http.MethodGet && gets.Add(1) == 3 {
			// The first GET is the client's, the second the check, the
			// third the read after the write.
			return errors.New("connection reset")
		}
		return s.ServeHTTP(w, r)
	})
	for _, verify := range []Verify{VerifyUpstream, VerifyCache} {
		gets.Store(0)
		cfg := DefaultConfig()
		cfg.Verify = verify
		m, base := wrGateway(t, cfg, next)
		etag := wrETag(t, base+"/a")
		if verify == VerifyCache {
			gets.Add(1) // the check is answered from the cache
		}
		r := wrMust(t, http.MethodPut, base+"/a", "v2", "If-Match", etag)
		if r.status != http.StatusNoContent || r.header.Get("ETag") != "" {
			t.Fatalf("verify %d: PUT: %d ETag %q, want 204 without ETag", verify, r.status, r.header.Get("ETag"))
		}
		// Nothing stale was left behind: the old ETag is refused.
		wrCheckProblem(t, wrMust(t, http.MethodPut, base+"/a", "v3", "If-Match", etag), http.StatusPreconditionFailed)
		wrEventually(t, "the lock table is empty", func() bool { return m.LockedKeys() == 0 })
		s.mu.Lock()
		s.docs["/a"] = "v1"
		s.mu.Unlock()
	}
}
