//go:build linux

package notifier

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

const arrive = 20 * time.Second

// testConfig is the default configuration over root, with a short batch
// window.
func testConfig(root string) Config {
	cfg := DefaultConfig()
	cfg.Root = root
	cfg.Hub.Batch = 5 * time.Millisecond
	return cfg
}

// start runs n behind a real HTTP server on 127.0.0.1.
func start(t *testing.T, cfg Config) (*Notifier, string) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
	})
	return n, srv.URL
}

func streamURL(base, ref, query string) string {
	u := base + "/v1/files/" + ref + "/notify"
	if query != "" {
		u += "?" + query
	}
	return u
}

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func touch(t testing.TB, p string) {
	t.Helper()
	f, err := os.Create(p)
	testutil.Must(t, err)
	f.Close()
}

func inoOf(t testing.TB, p string) string {
	t.Helper()
	var st syscall.Stat_t
	testutil.Must(t, syscall.Lstat(p, &st))
	return strconv.FormatUint(st.Ino, 10)
}

func TestParseFilter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Type
		err  bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"child_file_added", []Type{ChildFileAdded}, false},
		{"child_file_added, self_removed ,child_stream_added", []Type{ChildFileAdded, SelfRemoved, ChildStreamAdded}, false},
		{"child_file_added,,child_file_added", []Type{ChildFileAdded}, false},
		{"child_file_added,CHILD_FILE_REMOVED", nil, true},
		{"child_file", nil, true},
	} {
		f, err := ParseFilter(c.in)
		if c.err {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if c.want == nil {
			if f != AllTypes {
				t.Errorf("%q: %b, want every type", c.in, f)
			}
			continue
		}
		for typ := Type(0); typ < numTypes; typ++ {
			if f.Has(typ) != slices.Contains(c.want, typ) {
				t.Errorf("%q: Has(%s) = %v", c.in, typ, f.Has(typ))
			}
		}
	}
	if len(TypeNames()) != 24 {
		t.Errorf("%d types, want Qumulo's 24", len(TypeNames()))
	}
}

func FuzzParseFilter(f *testing.F) {
	f.Add("child_file_added,child_dir_removed")
	f.Add(" self_removed ,")
	f.Add("bogus")
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		if flt == 0 || flt&^AllTypes != 0 {
			t.Fatalf("%q: filter %b out of range", s, flt)
		}
		// Every accepted name is a known type.
		for _, name := range strings.Split(s, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if _, ok := typeByName(name); !ok {
					t.Fatalf("%q accepted with unknown %q", s, name)
				}
			}
		}
	})
}

// TestTopicJSON checks a notification as Qumulo writes it, relative to
// the stream's directory.
func TestTopicJSON(t *testing.T) {
	c := change{typ: ChildFileAdded, chain: []link{{ino: 1}, {ino: 2, name: "sub"}, {ino: 3, name: "a \"b\".txt"}}}
	for at, want := range []string{
		`{"type":"child_file_added","path":"sub/a \"b\".txt","spine":["1","2","3"],"stream_name":null}`,
		`{"type":"child_file_added","path":"a \"b\".txt","spine":["2","3"],"stream_name":null}`,
	} {
		if got := string(topic{}.AppendJSON(nil, &c, at)); got != want {
			t.Errorf("at %d: got  %s\nwant %s", at, got, want)
		}
	}
}

func TestMatchesNotifyURLs(t *testing.T) {
	n := &Notifier{cfg: Config{Prefix: "/v1/files"}}
	for path, want := range map[string]bool{
		"/v1/files/%2F/notify":                          true,
		"/v1/files/a/b/notify":                          true,
		"/v1/files/1234/notify":                         true,
		"/v1/files/notify":                              false,
		"/v1/files//notify":                             false,
		"/v1/files/a/notify/":                           false,
		"/v1/files/a":                                   false,
		"/v2/files/a/notify":                            false,
		"/v1/filesx/a/notify":                           false,
		"/v1/files/a/notify?recursive":                  true,
		"/v1/files/a/notify&recursive=true":             true,
		"/v1/files/%2Fa/notify&filter=x&recursive=true": true,
		"/v1/files/notify&a/notify":                     true,
		"/v1/files/a/notifyx&b=c":                       false,
		"/v1/files/notify&filter=x":                     false,
	} {
		u, _ := url.Parse("http://h" + path)
		if got := n.Match(&http.Request{URL: u}); got != want {
			t.Errorf("%s: Match = %v, want %v", path, got, want)
		}
	}
}

// TestWatchLimit makes inotify_add_watch fail with ENOSPC, as it does when
// fs.inotify.max_user_watches is reached.
func TestWatchLimit(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "sub", "inner"), 0o755))
	n, base := start(t, testConfig(root))
	allow := func(k int) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.addWatchFn = func(fd int, path string, mask uint32) (int, error) {
			if k == 0 {
				return -1, unix.ENOSPC
			}
			k--
			return unix.InotifyAddWatch(fd, path, mask)
		}
	}
	refused := func(ref, query string) {
		t.Helper()
		resp, err := client().Get(streamURL(base, ref, query))
		testutil.Must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(body), "fs.inotify.max_user_watches") {
			t.Errorf("%s?%s: status %d %s: %s", ref, query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}

	// No watch at all: refused.
	allow(0)
	refused(encode("/"), "")
	// A recursive stream that can watch sub but not sub/inner: refused,
	// and what it had watched is released.
	allow(1)
	refused("sub", "recursive=true")
	if w := n.Stats().Watches; w != 0 {
		t.Errorf("%d watches left by a refused stream", w)
	}

	// A recursive stream whose new subdirectory cannot be watched is told
	// with an overflow event.
	allow(2)
	s := ssetest.MustOpen(t, client(), streamURL(base, "sub", "recursive=true"), nil)
	testutil.Must(t, os.Mkdir(filepath.Join(root, "sub", "new"), 0o755))
	var evs []ssetest.Event
	for len(evs) < 2 {
		ev, err := s.Next(arrive)
		testutil.Must(t, err)
		evs = append(evs, ev)
	}
	if evs[0].Type != "" || !strings.Contains(evs[0].Data, `"child_dir_added"`) ||
		evs[1].Type != "overflow" || !strings.Contains(evs[1].Data, "watch_limit") {
		t.Errorf("got %+v, want child_dir_added then an overflow for the watch limit", evs)
	}
}

func encode(p string) string { return url.PathEscape(p) }

// TestKernelOverflow overflows the real inotify queue (by holding up the
// reader) and checks that every subscriber is told, and that the index is
// rebuilt so that later events are still exact.
func TestKernelOverflow(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	testutil.Must(t, err)
	limit, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	testutil.Must(t, err)
	if limit > 100000 {
		t.Skipf("fs.inotify.max_queued_events is %d; overflowing it takes too long", limit)
	}
	root := t.TempDir()
	testutil.Must(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	n, base := start(t, testConfig(root))
	a := ssetest.MustOpen(t, client(), streamURL(base, encode("/"), "recursive=true"), nil)
	b := ssetest.MustOpen(t, client(), streamURL(base, "sub", ""), nil)

	n.backlogMu.Lock() // the reader stops after its next read
	for i := range limit + 5000 {
		touch(t, filepath.Join(root, fmt.Sprintf("f%d", i)))
	}
	touch(t, filepath.Join(root, "sub", "during"))
	n.backlogMu.Unlock()

	for _, s := range []*ssetest.Stream{a, b} {
		deadline := time.Now().Add(arrive)
		for {
			ev, err := s.Next(time.Until(deadline))
			testutil.Must(t, err)
			if ev.Type == "overflow" {
				if !strings.Contains(ev.Data, "kernel_queue") {
					t.Errorf("overflow data %s", ev.Data)
				}
				break
			}
		}
	}
	// After the resync, a file created during the overflow is known: its
	// removal carries its real file ID.
	during := filepath.Join(root, "sub", "during")
	id := inoOf(t, during)
	testutil.Must(t, os.Remove(during))
	got := b.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_removed", "during") })
	if n := got[ssetest.Index(got, "child_file_removed", "during")]; n.Spine[len(n.Spine)-1] != id {
		t.Errorf("removed after resync: spine %v, want file id %s", n.Spine, id)
	}
}

// TestCloseEndsStreams closes the Notifier under open streams: each ends
// cleanly and no goroutine is left behind.
func TestCloseEndsStreams(t *testing.T) {
	root := t.TempDir()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	n, err := New(testConfig(root))
	testutil.Must(t, err)
	srv := httptest.NewServer(n)
	var streams []*ssetest.Stream
	for i := range 10 {
		s, _, err := ssetest.Open(client(), streamURL(srv.URL, encode("/"), fmt.Sprintf("recursive=%v", i%2 == 0)), nil)
		testutil.Must(t, err)
		streams = append(streams, s)
	}
	testutil.Must(t, n.Close())
	for _, s := range streams {
		if _, ended := s.Ended(arrive); !ended {
			t.Fatal("a stream is still open after Close")
		}
		if s.Err() != io.EOF {
			t.Errorf("stream ended with %v, want a clean end", s.Err())
		}
		if c := s.Comments(); c[len(c)-1] != ": closing" {
			t.Errorf("last comment %q, want \": closing\"", c[len(c)-1])
		}
		s.Close()
	}
	srv.Close()
	testutil.Must(t, n.Close()) // idempotent
	deadline := time.Now().Add(arrive)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines after Close, %d before", after, before)
	}
	again := httptest.NewServer(n)
	defer again.Close()
	if _, _, err := ssetest.Open(client(), streamURL(again.URL, encode("/"), ""), nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("stream after Close: %v, want 503", err)
	}
}

// TestWatchesReleased checks reference counting: watches follow the
// subscriptions that need them, and go when the last one has lingered.
func TestWatchesReleased(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "a", "b", "c"), 0o755))
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "x"), 0o755))
	cfg := testConfig(root)
	cfg.Linger = 50 * time.Millisecond
	n, base := start(t, cfg)
	watches := func() int { return n.Stats().Watches }

	recursive := ssetest.MustOpen(t, client(), streamURL(base, encode("/"), "recursive=true"), nil)
	if got := watches(); got != 5 { // root, a, a/b, a/b/c, x
		t.Errorf("recursive stream on root: %d watches, want 5", got)
	}
	one := ssetest.MustOpen(t, client(), streamURL(base, "a/b", ""), nil)
	if got := watches(); got != 5 {
		t.Errorf("a second stream on a watched directory added watches: %d", got)
	}
	recursive.Close()
	testutil.Eventually(t, "only a/b left watched", func() bool { return watches() == 1 })
	// a/b, watched through the recursive stream until now, still streams.
	touch(t, filepath.Join(root, "a", "b", "still"))
	one.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "still") })
	one.Close()
	testutil.Eventually(t, "no watch left", func() bool { return watches() == 0 && n.Stats().Lingering == 0 })
}

// TestSubtreeMovedOut moves a watched subtree out of a recursive watch:
// only moved_from is reported and its watches are released.
func TestSubtreeMovedOut(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "a", "sub", "deep", "deeper"), 0o755))
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "b"), 0o755))
	n, base := start(t, testConfig(root))
	s := ssetest.MustOpen(t, client(), streamURL(base, "a", "recursive=true"), nil)
	if w := n.Stats().Watches; w != 4 {
		t.Fatalf("%d watches, want 4", w)
	}
	testutil.Must(t, os.Rename(filepath.Join(root, "a", "sub"), filepath.Join(root, "b", "sub")))
	touch(t, filepath.Join(root, "b", "sub", "deep", "unseen"))
	touch(t, filepath.Join(root, "a", "marker"))
	got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "marker") })
	want := []string{"child_dir_moved_from sub", "child_file_added marker"}
	var keys []string
	for _, n := range got {
		keys = append(keys, n.Type+" "+n.Path)
	}
	if !slices.Equal(keys, want) {
		t.Errorf("got %v, want %v", keys, want)
	}
	testutil.Eventually(t, "the moved subtree's watches released", func() bool { return n.Stats().Watches == 1 })

	// And back in: one moved_to, and the subtree is watched again.
	testutil.Must(t, os.Rename(filepath.Join(root, "b", "sub"), filepath.Join(root, "a", "back")))
	touch(t, filepath.Join(root, "a", "back", "deep", "deeper", "seen"))
	got = s.Collect(t, arrive, func(ns []ssetest.Notification) bool {
		return ssetest.Has(ns, "child_file_added", "back/deep/deeper/seen")
	})
	if !ssetest.Has(got, "child_dir_moved_to", "back") || ssetest.Has(got, "child_file_added", "back/deep/unseen") {
		t.Errorf("got:\n%s", ssetest.Format(got))
	}
}

// TestWatchedDirectoryMoves renames the watched directory and its parent.
func TestWatchedDirectoryMoves(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	_, base := start(t, testConfig(root))
	s := ssetest.MustOpen(t, client(), streamURL(base, "a/b", ""), nil)

	// The parent, which nothing watches, is renamed: b is found again.
	testutil.Must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "z")))
	touch(t, filepath.Join(root, "z", "b", "after"))
	got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "after") })
	if n := got[len(got)-1]; n.Spine[1] != inoOf(t, filepath.Join(root, "z", "b", "after")) {
		t.Errorf("spine %v", n.Spine)
	}

	// b itself leaves root: for its subscribers, it is gone.
	testutil.Must(t, os.Rename(filepath.Join(root, "z", "b"), filepath.Join(outside, "b")))
	got = s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "self_removed", "") })
	if _, ended := s.Ended(arrive); !ended {
		t.Error("stream still open after its directory left root")
	}
	if last := got[len(got)-1]; last.Type != "self_removed" {
		t.Errorf("last notification %+v", last)
	}
}

// TestBatchAndKeepalive checks the batch window (changes made together
// arrive as one event), increasing ids, and keep-alive comments.
func TestBatchAndKeepalive(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.Hub.Batch, cfg.Hub.Keepalive = 300*time.Millisecond, 100*time.Millisecond
	_, base := start(t, cfg)
	s := ssetest.MustOpen(t, client(), streamURL(base, encode("/"), ""), nil)
	for _, name := range []string{"a", "b", "c"} {
		touch(t, filepath.Join(root, name))
	}
	ev, err := s.Next(arrive)
	testutil.Must(t, err)
	ns, err := ev.Decode()
	testutil.Must(t, err)
	if len(ns) != 3 {
		t.Errorf("one batch window gave %d notifications in its first payload, want 3: %s", len(ns), ev.Data)
	}
	touch(t, filepath.Join(root, "d"))
	ev2, err := s.Next(arrive)
	testutil.Must(t, err)
	id1, _ := strconv.ParseUint(ev.ID, 10, 64)
	id2, _ := strconv.ParseUint(ev2.ID, 10, 64)
	if id1 == 0 || id2 <= id1 {
		t.Errorf("ids %q then %q, want increasing numbers", ev.ID, ev2.ID)
	}
	testutil.Eventually(t, "a keep-alive comment", func() bool {
		return slices.Contains(s.Comments(), ": keepalive")
	})
}
