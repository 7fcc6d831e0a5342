//go:build linux

package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// Generous: these waits are about correctness, never speed.
const arrive = 20 * time.Second

// startNotify runs Caddy with fs_notify first in the site's route over
// root, extra options added; other requests reach a 418.
func startNotify(t *testing.T, root string, extra ...string) string {
	t.Helper()
	opts := ""
	for _, o := range extra {
		opts += "\t\t\t" + o + "\n"
	}
	return testutil.Start(t, fmt.Sprintf(`:{port} {
	bind 127.0.0.1
	route {
		fs_notify {
			root %s
			batch 10ms
%s		}
		respond "not a notify URL" 418
	}
}
`, root, opts))
}

func notifyURL(base, ref string, query string) string {
	u := base + "/v1/files/" + ref + "/notify"
	if query != "" {
		u += "?" + query
	}
	return u
}

func encRef(abs string) string { return url.PathEscape(abs) }

func ino(t testing.TB, p string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}

func writeFile(t testing.TB, p, s string) {
	t.Helper()
	testutil.Must(t, os.WriteFile(p, []byte(s), 0o644))
}

// untilMarker creates a marker file in dir and collects notifications up
// to and excluding the marker's child_file_added, so that everything one
// operation caused, and nothing else, is returned.
func untilMarker(t *testing.T, s *ssetest.Stream, dir, markerPath string) []ssetest.Notification {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, markerPath))
	testutil.Must(t, err)
	f.Close()
	all := s.Collect(t, arrive, func(ns []ssetest.Notification) bool {
		return ssetest.Has(ns, "child_file_added", markerPath)
	})
	return all[:ssetest.Index(all, "child_file_added", markerPath)]
}

// TestFSNotifyEveryType checks the wiring through Caddy and a real SSE
// client: a few operations on a watched directory arrive as the types
// they cause, with path and spine matching the file system. Every
// operation's types are pinned by the notifier's TestNotificationTypes.
func TestFSNotifyEveryType(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	base := startNotify(t, root)
	rootIno := ino(t, root)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), ""), nil)
	if got := s.Resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control = %q, want no-cache", got)
	}

	p := func(name string) string { return filepath.Join(root, name) }
	type step struct {
		name    string
		op      func(t *testing.T)
		want    []string // "type path"
		ordered bool     // want is also the order
		allowed []string // types that may also appear
	}
	steps := []step{
		{name: "create", op: func(t *testing.T) { writeFile(t, p("f"), "") },
			want: []string{"child_file_added f"}},
		{name: "write", op: func(t *testing.T) {
			f, err := os.OpenFile(p("f"), os.O_WRONLY|os.O_APPEND, 0)
			testutil.Must(t, err)
			_, err = f.WriteString("hello")
			testutil.Must(t, err)
			testutil.Must(t, f.Close())
		}, want: []string{"child_data_written f", "child_size_changed f"}, allowed: []string{"child_mtime_changed"}},
		{name: "chmod", op: func(t *testing.T) { testutil.Must(t, os.Chmod(p("f"), 0o600)) },
			want: []string{"child_acl_changed f"}},
		{name: "rename within", op: func(t *testing.T) { testutil.Must(t, os.Rename(p("f"), p("g"))) },
			want: []string{"child_file_moved_from f", "child_file_moved_to g"}, ordered: true},
		{name: "rename out of the tree", op: func(t *testing.T) { testutil.Must(t, os.Rename(p("g"), filepath.Join(outside, "g"))) },
			want: []string{"child_file_moved_from g"}},
		{name: "mkdir", op: func(t *testing.T) { testutil.Must(t, os.Mkdir(p("d"), 0o755)) },
			want: []string{"child_dir_added d"}},
		{name: "rmdir", op: func(t *testing.T) { testutil.Must(t, os.Remove(p("d"))) },
			want: []string{"child_dir_removed d"}},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := map[string]string{}
			names, _ := os.ReadDir(root)
			for _, e := range names {
				before[e.Name()] = ino(t, p(e.Name()))
			}
			st.op(t)
			got := untilMarker(t, s, root, fmt.Sprintf(".mark%d", i))

			var gotKeys []string
			for _, n := range got {
				gotKeys = append(gotKeys, n.Type+" "+n.Path)
				if !slices.Contains(st.allowed, n.Type) && !slices.Contains(st.want, n.Type+" "+n.Path) {
					t.Errorf("unexpected %s %s", n.Type, n.Path)
				}
				// path and spine against the file system
				if strings.Contains(n.Path, "/") || n.Path == "" {
					t.Errorf("%s: path %q is not a child of the watched directory", n.Type, n.Path)
				}
				if len(n.Spine) != 2 || n.Spine[0] != rootIno {
					t.Errorf("%s %s: spine %v, want [%s <file id>]", n.Type, n.Path, n.Spine, rootIno)
					continue
				}
				want := before[n.Path]
				if _, err := os.Lstat(p(n.Path)); err == nil {
					want = ino(t, p(n.Path))
				}
				if n.Spine[1] != want {
					t.Errorf("%s %s: file id %s, want %s (stat)", n.Type, n.Path, n.Spine[1], want)
				}
				if n.StreamName != nil {
					t.Errorf("stream_name = %q, want null", *n.StreamName)
				}
			}
			last := -1
			for _, w := range st.want {
				i := slices.Index(gotKeys, w)
				if i < 0 {
					t.Errorf("missing %s; got %v", w, gotKeys)
					continue
				}
				if st.ordered && i < last {
					t.Errorf("%s came before %s; got %v", w, st.want[0], gotKeys)
				}
				last = i
			}
		})
	}
}

// TestFSNotifyRecursive checks recursive streams: a directory created and
// filled at once is reported in full, paths and spines go down the tree.
func TestFSNotifyRecursive(t *testing.T) {
	root := t.TempDir()
	base := startNotify(t, root)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), "recursive=true"), nil)

	const dirs = 50
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprintf("d%d", i))
		testutil.Must(t, os.Mkdir(d, 0o755))
		writeFile(t, filepath.Join(d, "f"), "x")
		testutil.Must(t, os.MkdirAll(filepath.Join(d, "g", "h"), 0o755))
		writeFile(t, filepath.Join(d, "g", "h", "deep"), "y")
	}
	want := map[string]string{}
	for i := range dirs {
		d := fmt.Sprintf("d%d", i)
		want["child_dir_added "+d] = d
		want["child_file_added "+d+"/f"] = d + "/f"
		want["child_dir_added "+d+"/g"] = d + "/g"
		want["child_dir_added "+d+"/g/h"] = d + "/g/h"
		want["child_file_added "+d+"/g/h/deep"] = d + "/g/h/deep"
	}
	got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool {
		n := 0
		for _, x := range ns {
			if _, ok := want[x.Type+" "+x.Path]; ok {
				n++
			}
		}
		return n >= len(want)
	})
	for _, n := range got {
		rel, ok := want[n.Type+" "+n.Path]
		if !ok {
			continue
		}
		// spine: the watched directory, then each directory down to the file
		parts := strings.Split(rel, "/")
		wantSpine := []string{ino(t, root)}
		for j := range parts {
			wantSpine = append(wantSpine, ino(t, filepath.Join(append([]string{root}, parts[:j+1]...)...)))
		}
		if !slices.Equal(n.Spine, wantSpine) {
			t.Errorf("%s %s: spine %v, want %v", n.Type, n.Path, n.Spine, wantSpine)
		}
	}
	for _, n := range got {
		if n.Type == "child_file_added" && strings.HasSuffix(n.Path, "/deep") {
			if i := ssetest.Index(got, "child_dir_added", strings.TrimSuffix(n.Path, "/deep")); i < 0 || i > ssetest.Index(got, n.Type, n.Path) {
				t.Errorf("%s reported before its directory", n.Path)
			}
		}
	}

	// A rename inside the tree keeps watching the subtree under its new name.
	testutil.Must(t, os.Rename(filepath.Join(root, "d0"), filepath.Join(root, "d0-renamed")))
	writeFile(t, filepath.Join(root, "d0-renamed", "g", "h", "after"), "z")
	got = s.Collect(t, arrive, func(ns []ssetest.Notification) bool {
		return ssetest.Has(ns, "child_file_added", "d0-renamed/g/h/after")
	})
	from, to := ssetest.Index(got, "child_dir_moved_from", "d0"), ssetest.Index(got, "child_dir_moved_to", "d0-renamed")
	if from < 0 || to < 0 || from > to {
		t.Errorf("rename of d0: moved_from at %d, moved_to at %d:\n%s", from, to, ssetest.Format(got))
	}
}

// TestFSNotifyNonRecursive checks that a non-recursive stream reports
// immediate children only.
func TestFSNotifyNonRecursive(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "sub", "deeper"), 0o755))
	base := startNotify(t, root)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), "recursive=false"), nil)
	writeFile(t, filepath.Join(root, "sub", "grandchild"), "x")
	writeFile(t, filepath.Join(root, "sub", "deeper", "great"), "x")
	testutil.Must(t, os.Chmod(filepath.Join(root, "sub", "deeper"), 0o700))
	got := untilMarker(t, s, root, "child")
	if len(got) != 0 {
		t.Errorf("non-recursive stream reported grandchildren:\n%s", ssetest.Format(got))
	}
}

// TestFSNotifyFilter checks that only the requested types are sent.
func TestFSNotifyFilter(t *testing.T) {
	root := t.TempDir()
	base := startNotify(t, root)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), "filter=child_file_removed,child_stream_added"), nil)
	writeFile(t, filepath.Join(root, "a"), "1")
	testutil.Must(t, os.Chmod(filepath.Join(root, "a"), 0o600))
	testutil.Must(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")))
	testutil.Must(t, os.Remove(filepath.Join(root, "b")))
	got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return len(ns) > 0 })
	if len(got) != 1 || got[0].Type != "child_file_removed" || got[0].Path != "b" {
		t.Errorf("filtered stream got:\n%s", ssetest.Format(got))
	}
}

// TestFSNotifyRefs checks the three ways of naming a directory.
func TestFSNotifyRefs(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "my", "directory"), 0o755))
	base := startNotify(t, root)
	dir := filepath.Join(root, "my", "directory")
	for _, ref := range []string{
		encRef("/my/directory"),   // URL-encoded absolute path
		"my/directory",            // plain segments
		ino(t, dir),               // file ID
		encRef("/my/./directory"), // a harmless dot
	} {
		t.Run(ref, func(t *testing.T) {
			s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, ref, ""), nil)
			name := "file-" + strings.NewReplacer("%", "_", "/", "_").Replace(ref)
			writeFile(t, filepath.Join(dir, name), "x")
			got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", name) })
			n := got[ssetest.Index(got, "child_file_added", name)]
			if want := []string{ino(t, dir), ino(t, filepath.Join(dir, name))}; !slices.Equal(n.Spine, want) {
				t.Errorf("spine %v, want %v", n.Spine, want)
			}
		})
	}
}

type problemDoc struct {
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Status      int      `json:"status"`
	Detail      string   `json:"detail"`
	ValidValues []string `json:"valid_values"`
}

func getProblem(t *testing.T, method, u string) (*http.Response, problemDoc) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	testutil.Must(t, err)
	resp, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var d problemDoc
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s %s: %d with Content-Type %q, want application/problem+json: %s", method, u, resp.StatusCode, ct, body)
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, u, body, err)
	}
	if d.Status != resp.StatusCode || d.Title == "" || d.Type == "" || d.Detail == "" {
		t.Errorf("%s %s: incomplete problem %+v", method, u, d)
	}
	return resp, d
}

// TestFSNotifyErrors checks every error of the contract and its problem
// document.
func TestFSNotifyErrors(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	testutil.Must(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	writeFile(t, filepath.Join(root, "file"), "x")
	writeFile(t, filepath.Join(outside, "secret"), "x")
	testutil.Must(t, os.Symlink(outside, filepath.Join(root, "escape")))
	testutil.Must(t, os.Symlink("../..", filepath.Join(root, "sub", "up")))
	testutil.Must(t, os.Symlink("sub", filepath.Join(root, "inside"))) // a symlink that stays inside is fine
	base := startNotify(t, root, "max_subscribers 2")

	cases := []struct {
		name, method, ref, query string
		status                   int
		valid                    []string
	}{
		{"dot-dot", "GET", "..", "", 404, nil},
		{"dot-dot deeper", "GET", "sub/../..", "", 404, nil},
		{"encoded dot-dot", "GET", "%2e%2e", "", 404, nil},
		{"encoded path with dot-dot", "GET", "%2Fsub%2F..%2F..%2Fetc", "", 404, nil},
		{"symlink outside root", "GET", "escape", "", 404, nil},
		{"relative symlink climbing out", "GET", "sub/up", "", 404, nil},
		{"unknown ref", "GET", "nope", "", 404, nil},
		{"unknown file id", "GET", "999999999999", "", 404, nil},
		{"a file", "GET", "file", "", 400, nil},
		{"a file by id", "GET", ino(t, filepath.Join(root, "file")), "", 400, nil},
		{"unknown filter", "GET", "sub", "filter=child_file_added,child_bogus", 400, []string{"child_file_added", "self_removed"}},
		{"bad recursive", "GET", "sub", "recursive=yes", 400, []string{"true", "false"}},
		{"POST", "POST", "sub", "", 405, nil},
		{"DELETE", "DELETE", "sub", "", 405, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, d := getProblem(t, c.method, notifyURL(base, c.ref, c.query))
			if resp.StatusCode != c.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, d.Detail, c.status)
			}
			for _, v := range c.valid {
				if !slices.Contains(d.ValidValues, v) {
					t.Errorf("valid_values %v lacks %q", d.ValidValues, v)
				}
			}
			if c.status == 405 && resp.Header.Get("Allow") != "GET" {
				t.Errorf("Allow = %q, want GET", resp.Header.Get("Allow"))
			}
		})
	}

	t.Run("symlink inside root", func(t *testing.T) {
		ssetest.MustOpen(t, testutil.Client(), notifyURL(base, "inside", ""), nil)
	})
	t.Run("max_subscribers", func(t *testing.T) {
		// A slot frees once a client leaves, which the gateway notices a
		// moment later: the previous subtest's stream may still count.
		openWhenFree := func(query string) *ssetest.Stream {
			deadline := time.Now().Add(arrive)
			for {
				s, resp, err := ssetest.Open(testutil.Client(), notifyURL(base, "sub", query), nil)
				if err == nil {
					return s
				}
				if resp == nil || resp.StatusCode != 503 || time.Now().After(deadline) {
					t.Fatalf("opening a stream with a slot free: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		a := openWhenFree("")
		b := openWhenFree("recursive=true")
		defer b.Close()
		resp, _ := getProblem(t, "GET", notifyURL(base, "sub", ""))
		if resp.StatusCode != 503 {
			t.Fatalf("third stream: status %d, want 503", resp.StatusCode)
		}
		a.Close()
		openWhenFree("").Close()
	})
	t.Run("other paths pass through", func(t *testing.T) {
		resp, err := testutil.Client().Get(base + "/v1/files/sub")
		testutil.Must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 418 {
			t.Errorf("status %d, want the next handler's 418", resp.StatusCode)
		}
	})
}

// TestFSNotifyUnderHandle runs the Caddyfile.example layout: fs_notify
// under `handle /v1/files/*`. Caddy's path matcher cleans ".." before
// matching, so a traversal attempt never reaches fs_notify; it must not
// get a stream either way.
func TestFSNotifyUnderHandle(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	base := testutil.Start(t, fmt.Sprintf(`:{port} {
	bind 127.0.0.1
	handle /v1/files/* {
		fs_notify {
			root %s
		}
	}
	handle {
		respond "elsewhere" 404
	}
}
`, root))
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/sub"), "recursive=true"), nil)
	writeFile(t, filepath.Join(root, "sub", "x"), "1")
	s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "x") })
	for _, ref := range []string{"..", "%2e%2e", "sub/../..", "%2Fsub%2F..%2F..%2Fetc"} {
		_, resp, err := ssetest.Open(testutil.Client(), notifyURL(base, ref, ""), nil)
		if err == nil || resp == nil || resp.StatusCode != 404 {
			t.Errorf("%s: got a stream or no 404: %v", ref, err)
		}
	}
}

// TestFSNotifyLastEventID checks replay from history on reconnection, and
// the overflow event when the id is too old to replay.
func TestFSNotifyLastEventID(t *testing.T) {
	root := t.TempDir()
	base := startNotify(t, root, "history 1")
	u := notifyURL(base, encRef("/"), "")
	s := ssetest.MustOpen(t, testutil.Client(), u, nil)
	writeFile(t, filepath.Join(root, "one"), "")
	ev, err := s.Next(arrive)
	testutil.Must(t, err)
	if ev.ID == "" {
		t.Fatal("event has no id")
	}
	s.Close()

	// Missed while disconnected.
	writeFile(t, filepath.Join(root, "two"), "")
	time.Sleep(100 * time.Millisecond) // let the batch window close while nobody listens
	s2 := ssetest.MustOpen(t, testutil.Client(), u, http.Header{"Last-Event-Id": {ev.ID}})
	ev2, err := s2.Next(arrive)
	testutil.Must(t, err)
	ns, err := ev2.Decode()
	testutil.Must(t, err)
	if ev2.Type != "" || len(ns) == 0 || ns[0].Path != "two" {
		t.Fatalf("replay: got %q %s, want child_file_added two", ev2.Type, ev2.Data)
	}
	if id1, _ := strconv.ParseUint(ev.ID, 10, 64); func() bool { id2, _ := strconv.ParseUint(ev2.ID, 10, 64); return id2 <= id1 }() {
		t.Errorf("ids not increasing: %s then %s", ev.ID, ev2.ID)
	}
	// Live events follow the replay on the same stream.
	writeFile(t, filepath.Join(root, "three"), "")
	s2.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "three") })
	s2.Close()

	// More frames than history while away: overflow first.
	for i := range 4 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("many%d", i)), "")
		time.Sleep(40 * time.Millisecond) // separate batch windows
	}
	time.Sleep(100 * time.Millisecond)
	s3 := ssetest.MustOpen(t, testutil.Client(), u, http.Header{"Last-Event-Id": {ev2.ID}})
	ev3, err := s3.Next(arrive)
	testutil.Must(t, err)
	if ev3.Type != "overflow" {
		t.Errorf("stale Last-Event-ID: first event %q %s, want overflow", ev3.Type, ev3.Data)
	}

	// An id from another run is also too old.
	s4 := ssetest.MustOpen(t, testutil.Client(), u, http.Header{"Last-Event-Id": {"12"}})
	ev4, err := s4.Next(arrive)
	testutil.Must(t, err)
	if ev4.Type != "overflow" {
		t.Errorf("foreign Last-Event-ID: first event %q %s, want overflow", ev4.Type, ev4.Data)
	}
}

// TestFSNotifySelfRemoved removes the watched directory.
func TestFSNotifySelfRemoved(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "doomed")
	testutil.Must(t, os.MkdirAll(filepath.Join(dir, "inner"), 0o755))
	writeFile(t, filepath.Join(dir, "f"), "x")
	base := startNotify(t, root)
	dirIno := ino(t, dir)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, "doomed", "recursive=true"), nil)
	testutil.Must(t, os.RemoveAll(dir))
	got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "self_removed", "") })
	last := got[len(got)-1]
	if last.Type != "self_removed" || !slices.Equal(last.Spine, []string{dirIno}) {
		t.Errorf("last notification %+v, want self_removed with spine [%s]", last, dirIno)
	}
	if !ssetest.Has(got, "child_file_removed", "f") || !ssetest.Has(got, "child_dir_removed", "inner") {
		t.Errorf("children's removal missing:\n%s", ssetest.Format(got))
	}
	if evs, ended := s.Ended(arrive); !ended || len(evs) != 0 {
		t.Errorf("stream did not end after self_removed (ended %v, %d more events)", ended, len(evs))
	}
	if !errors.Is(s.Err(), io.EOF) {
		t.Errorf("stream ended with %v, want a clean end", s.Err())
	}
}

// TestFSNotifyReloadEndsStreams checks that a config reload ends the old
// configuration's streams cleanly and the new one serves.
func TestFSNotifyReloadEndsStreams(t *testing.T) {
	root := t.TempDir()
	base := startNotify(t, root)
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), ""), nil)
	if g := ssetest.ServingGoroutines(); g != 0 {
		t.Errorf("%d goroutines serve the HTTP/1.1 stream; it should be taken over", g)
	}

	testutil.Load(t, fmt.Sprintf(":%s {\n\tbind 127.0.0.1\n\tfs_notify {\n\t\troot %s\n\t\tkeepalive 5s\n\t}\n}\n", port, root))
	if _, ended := s.Ended(arrive); !ended {
		t.Fatal("stream of the old configuration still open after reload")
	}
	if !errors.Is(s.Err(), io.EOF) {
		t.Errorf("stream ended with %v, want a clean end", s.Err())
	}
	s2 := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), ""), nil)
	writeFile(t, filepath.Join(root, "after-reload"), "")
	s2.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "after-reload") })
}

// TestFSNotifyReloadFlushesWindow makes a change and reloads Caddy while
// its notification is still inside the batch window: every stream, one
// over HTTP/1.1 (taken over) and one over HTTP/2 (written by its request's
// goroutine), receives it before the closing comment. A client that had
// no event yet has no Last-Event-ID to resume from: without the flush it
// would never learn of the change.
func TestFSNotifyReloadFlushesWindow(t *testing.T) {
	root := t.TempDir()
	port := testutil.FreePort(t)
	site := func(batch string) []byte {
		return testutil.Adapt(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	servers {
		protocols h1 h2c
	}
	log {
		level ERROR
	}
}
:%d {
	bind 127.0.0.1
	route {
		fs_notify {
			root %s
			batch %s
		}
	}
}
`, port, root, batch))
	}
	testutil.Must(t, caddy.Load(site("1h"), true))
	t.Cleanup(func() { _ = caddy.Stop() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	h1, h2 := testutil.Client(), &http.Client{Transport: &http.Transport{Protocols: protos}}
	t.Cleanup(h1.CloseIdleConnections)
	t.Cleanup(h2.CloseIdleConnections)
	streams := []*ssetest.Stream{
		ssetest.MustOpen(t, h1, notifyURL(base, encRef("/"), ""), nil),
		ssetest.MustOpen(t, h2, notifyURL(base, encRef("/"), ""), nil),
	}

	writeFile(t, filepath.Join(root, "just-before-reload"), "")
	time.Sleep(30 * time.Millisecond)
	testutil.Must(t, caddy.Load(site("50ms"), true))
	for _, s := range streams {
		evs, ended := s.Ended(arrive)
		if !ended || !errors.Is(s.Err(), io.EOF) {
			t.Fatalf("%s: stream still open or broken after reload: %v", s.Resp.Proto, s.Err())
		}
		var got []ssetest.Notification
		for _, ev := range evs {
			ns, err := ev.Decode()
			testutil.Must(t, err)
			got = append(got, ns...)
		}
		if !ssetest.Has(got, "child_file_added", "just-before-reload") {
			t.Errorf("%s: the change made before the reload never arrived; got:\n%s", s.Resp.Proto, ssetest.Format(got))
		}
		if c := s.Comments(); c[len(c)-1] != ": closing" {
			t.Errorf("%s: last comment %q, want \": closing\"", s.Resp.Proto, c[len(c)-1])
		}
	}
}

// TestFSNotifyQumuloURLAsWritten uses the URL as Qumulo's documentation
// writes it, with & where ? belongs: the rest is the query it means,
// merged with a real query if there is one too.
func TestFSNotifyQumuloURLAsWritten(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "sub", "deep"), 0o755))
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "notify&odd"), 0o755))
	base := startNotify(t, root)

	s := ssetest.MustOpen(t, testutil.Client(), base+"/v1/files/%2Fsub/notify&filter=child_file_removed&recursive=true", nil)
	both := ssetest.MustOpen(t, testutil.Client(), base+"/v1/files/%2Fsub/notify&filter=child_file_removed?recursive=true", nil)
	writeFile(t, filepath.Join(root, "sub", "deep", "f"), "x")
	testutil.Must(t, os.Remove(filepath.Join(root, "sub", "deep", "f")))
	for _, st := range []*ssetest.Stream{s, both} {
		got := st.Collect(t, arrive, func(ns []ssetest.Notification) bool { return len(ns) > 0 })
		if len(got) != 1 || got[0].Type != "child_file_removed" || got[0].Path != "deep/f" {
			t.Errorf("filtered recursive stream got:\n%s", ssetest.Format(got))
		}
	}

	resp, d := getProblem(t, "GET", base+"/v1/files/sub/notify&recursive=yes")
	if resp.StatusCode != 400 || !slices.Contains(d.ValidValues, "true") {
		t.Errorf("recursive=yes after &: %d %+v, want 400", resp.StatusCode, d)
	}
	// A directory whose name starts with "notify&" is still a ref.
	ssetest.MustOpen(t, testutil.Client(), base+"/v1/files/notify&odd/notify", nil)
}
