//go:build linux

package caddymodule

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// stalledStream opens a stream over a raw connection with a tiny receive
// buffer, reads up to the first comment and then stops reading.
type stalledStream struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func openStalled(t *testing.T, base, path string) *stalledStream {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	testutil.Must(t, err)
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", base+path, nil)
	testutil.Must(t, req.Write(conn))
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, req)
	testutil.Must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("stalled client: status %d", resp.StatusCode)
	}
	line := make([]byte, len(": watching\n"))
	_, err = io.ReadFull(resp.Body, line)
	testutil.Must(t, err)
	if line[0] != ':' {
		t.Fatalf("first bytes %q are not a comment", line)
	}
	return &stalledStream{conn: conn, br: br, resp: resp}
}

// TestFSNotifySlowSubscriberCutOff stalls one subscriber while a fast one
// reads: the fast one receives everything, the stalled one is sent an
// overflow event and disconnected instead of holding the others back.
func TestFSNotifySlowSubscriberCutOff(t *testing.T) {
	root := t.TempDir()
	// Notifications about files 100 directories down are some 4 KB each, so
	// that a few thousand overflow the socket buffers of the stalled client
	// (up to 4 MB on the sending side with Linux's default tcp_wmem). A
	// queue of four, not one, lets the fast subscriber's writer be
	// scheduled a few frames late on a busy machine without being cut off
	// itself.
	deep := root
	for i := range 100 {
		deep = filepath.Join(deep, fmt.Sprintf("level-%03d-%s", i, strings.Repeat("d", 18)))
	}
	testutil.Must(t, os.MkdirAll(deep, 0o755))
	base := testutil.Start(t, fmt.Sprintf(`:{port} {
	bind 127.0.0.1
	route {
		metrics /metrics
		fs_notify {
			root %s
			batch 10ms
			queue 4
		}
	}
}
`, root))
	stalled := openStalled(t, base, "/v1/files/%2F/notify?recursive=true")
	fast := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), "recursive=true"), nil)
	if g := ssetest.ServingGoroutines(); g != 0 {
		t.Errorf("%d goroutines serve the HTTP/1.1 streams; they should be taken over", g)
	}

	// Files are created until the stalled one is cut off: how much its
	// socket buffers and its writer hold depends on the kernel and the
	// load.
	var stop atomic.Bool
	files := 0
	created := make(chan struct{})
	go func() {
		defer close(created)
		for ; files < 30000 && !stop.Load(); files++ {
			f, err := os.Create(filepath.Join(deep, fmt.Sprintf("f%05d", files)))
			if err != nil {
				return
			}
			f.Close()
			if files%50 == 0 {
				time.Sleep(2 * time.Millisecond) // several batch windows, so several frames
			}
		}
	}()
	// Stalled until it is cut off: not longer, or the write timeout
	// (10s without progress) would end its stream first on a slow machine.
	testutil.Eventually(t, "the stalled subscriber cut off", func() bool {
		res, err := testutil.Client().Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return regexp.MustCompile(`(?m)^caddy_fs_notify_subscribers_cut_off_total\{[^}]*\} 1$`).Match(body)
	})
	stop.Store(true)
	<-created

	// The stalled client reads again: what was in flight, then the
	// overflow event, then the end of the stream.
	testutil.Must(t, stalled.conn.SetReadDeadline(time.Now().Add(arrive)))
	rest, err := io.ReadAll(stalled.resp.Body)
	if err != nil {
		t.Fatalf("stalled stream did not end cleanly: %v (read %d bytes)", err, len(rest))
	}
	events := bytes.Split(bytes.TrimSpace(rest), []byte("\n\n"))
	last := string(events[len(events)-1])
	if !strings.Contains(last, "event: overflow") || !strings.Contains(last, `"reason":"subscriber_queue"`) {
		t.Errorf("stalled stream's last event is %q, want an overflow event", last)
	}

	// Meanwhile the fast one received everything.
	got := fast.Collect(t, arrive, func(ns []ssetest.Notification) bool { return len(ns) >= files })
	if len(got) != files {
		t.Errorf("fast subscriber got %d notifications, want %d", len(got), files)
	}
	if n := bytes.Count(rest, []byte(`"child_file_added"`)); n >= files {
		t.Errorf("stalled subscriber received all %d notifications; it was never cut off", n)
	}
}

// TestFSNotifyGoroutinesReturn checks that streams leave no goroutine
// behind when their clients leave.
func TestFSNotifyGoroutinesReturn(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
	base := startNotify(t, root)
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	warm := ssetest.MustOpen(t, client(), notifyURL(base, "a", ""), nil)
	warm.Close()
	settle := func(want int) int {
		deadline := time.Now().Add(arrive)
		for {
			runtime.GC()
			n := runtime.NumGoroutine()
			if n <= want || time.Now().After(deadline) {
				return n
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	baseline := runtime.NumGoroutine()

	var streams []*ssetest.Stream
	for i := range 30 {
		ref := []string{encRef("/"), "a", "a/b"}[i%3]
		streams = append(streams, ssetest.MustOpen(t, client(), notifyURL(base, ref, fmt.Sprintf("recursive=%v", i%2 == 0)), nil))
	}
	writeFile(t, filepath.Join(root, "a", "b", "x"), "1")
	streams[0].Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "a/b/x") })
	for _, s := range streams {
		s.Close()
	}
	if n := settle(baseline); n > baseline {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Fatalf("%d goroutines after the clients left, %d before:\n%s", n, baseline, buf.String())
	}
}

// TestFSNotifyStress performs 10,000 file operations across a nested tree
// under a recursive stream and checks that every one is reported.
func TestFSNotifyStress(t *testing.T) {
	root := t.TempDir()
	var dirs []string
	for i := range 5 {
		for j := range 5 {
			d := filepath.Join(fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", j))
			testutil.Must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
			dirs = append(dirs, d)
		}
	}
	base := startNotify(t, root)
	s := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), "recursive=true"), nil)

	rng := rand.New(rand.NewPCG(1, 2))
	// The gateway classifies an attribute change by comparing the file with
	// what it saw of it last. A file removed before its change is examined
	// takes that change with it, and a file changed before it was first
	// examined is reported added as it then is: so attributes are changed
	// only on files of earlier rounds, and not removed in the round that
	// changed them. Every round ends when all it did has been reported.
	files := map[string][]string{} // dir → files in it
	chmodded := map[string]bool{}  // chmodded once (and never again)
	fresh := map[string]bool{}     // created or chmodded this round
	var made, madeNow []string     // directories made in earlier rounds, in this one
	want := map[string]int{}
	got := map[string]int{}
	last := ""
	seq := 0
	pick := func(d string) (string, int) {
		fs := files[d]
		if len(fs) == 0 {
			return "", -1
		}
		i := rng.IntN(len(fs))
		return fs[i], i
	}
	op := func() {
		d := dirs[rng.IntN(len(dirs))]
		abs := func(n string) string { return filepath.Join(root, d, n) }
		switch r := rng.IntN(100); {
		case r < 30 || len(files[d]) < 2: // create
			seq++
			n := fmt.Sprintf("f%d", seq)
			f, err := os.OpenFile(abs(n), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			testutil.Must(t, err)
			f.Close()
			files[d] = append(files[d], n)
			fresh[d+"/"+n] = true
			want["child_file_added"]++
			last = d + "/" + n
		case r < 50: // write
			n, _ := pick(d)
			if d+"/"+n == last {
				return
			}
			f, err := os.OpenFile(abs(n), os.O_WRONLY|os.O_APPEND, 0)
			testutil.Must(t, err)
			_, err = f.Write([]byte{'x'})
			testutil.Must(t, err)
			f.Close()
			want["child_data_written"]++
			last = d + "/" + n
		case r < 60: // chmod, once per file
			n, _ := pick(d)
			if chmodded[d+"/"+n] || fresh[d+"/"+n] || d+"/"+n == last {
				return
			}
			chmodded[d+"/"+n] = true
			testutil.Must(t, os.Chmod(abs(n), 0o600))
			fresh[d+"/"+n] = true
			want["child_acl_changed"]++
			last = d + "/" + n
		case r < 72: // rename, within the directory or to another
			n, i := pick(d)
			to := dirs[rng.IntN(len(dirs))]
			seq++
			nn := fmt.Sprintf("r%d", seq)
			testutil.Must(t, os.Rename(abs(n), filepath.Join(root, to, nn)))
			files[d] = append(files[d][:i], files[d][i+1:]...)
			files[to] = append(files[to], nn)
			if chmodded[d+"/"+n] {
				chmodded[to+"/"+nn] = true
			}
			if fresh[d+"/"+n] {
				fresh[to+"/"+nn] = true
			}
			want["child_file_moved_from"]++
			want["child_file_moved_to"]++
			last = to + "/" + nn
		case r < 88: // remove
			n, i := pick(d)
			if fresh[d+"/"+n] {
				return
			}
			testutil.Must(t, os.Remove(abs(n)))
			files[d] = append(files[d][:i], files[d][i+1:]...)
			want["child_file_removed"]++
			last = ""
		case r < 95: // mkdir, and at once a file in it
			seq++
			nd := filepath.Join(d, fmt.Sprintf("c%d", seq))
			testutil.Must(t, os.Mkdir(filepath.Join(root, nd), 0o755))
			f, err := os.Create(filepath.Join(root, nd, "inside"))
			testutil.Must(t, err)
			f.Close()
			want["child_dir_added"]++
			want["child_file_added"]++
			madeNow = append(madeNow, nd)
			last = ""
		default: // rmdir a directory made earlier
			if len(made) == 0 {
				return
			}
			nd := made[0]
			made = made[1:]
			testutil.Must(t, os.Remove(filepath.Join(root, nd, "inside")))
			testutil.Must(t, os.Remove(filepath.Join(root, nd)))
			want["child_file_removed"]++
			want["child_dir_removed"]++
			last = ""
		}
	}
	total := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	const ops = 10000
	done := 0
	for round := 0; done < ops; round++ {
		for i := 0; i < 1000 && done < ops; i++ {
			before := total(want)
			op()
			if total(want) > before {
				done++
			}
		}
		// Everything done so far arrives before the next round.
		deadline := time.Now().Add(arrive)
		for !countsReached(got, want) {
			ev, err := s.Next(time.Until(deadline))
			if err != nil {
				t.Fatalf("after %d operations: %v\nreported %v\ndone     %v", done, err, got, want)
			}
			if ev.Type != "" {
				t.Fatalf("unexpected %s event: %s", ev.Type, ev.Data)
			}
			ns, err := ev.Decode()
			testutil.Must(t, err)
			for _, n := range ns {
				got[n.Type]++
			}
		}
		made = append(made, madeNow...)
		madeNow = nil
		clear(fresh)
	}
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s: %d reported, %d done", typ, got[typ], n)
		}
	}
	for typ, n := range got {
		if _, ok := want[typ]; !ok && typ != "child_size_changed" && typ != "child_mtime_changed" {
			t.Errorf("%s: %d reported, none caused", typ, n)
		}
	}
	t.Logf("%d operations: %v", done, want)
}

func countsReached(got, want map[string]int) bool {
	for typ, n := range want {
		if got[typ] < n {
			return false
		}
	}
	return true
}
