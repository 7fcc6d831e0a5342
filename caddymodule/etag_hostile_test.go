package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dustin/go-humanize"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
)

// Hostile clients and failing upstreams: a client that trickles its body
// or reads nothing, an upstream that stalls or breaks off. Caddy runs
// in-process in front of real upstreams on 127.0.0.1, except where a
// memory figure must be the gateway's alone.

// hostileTempDir points the temporary files of the gateways this test
// starts at a directory of its own, and returns it.
func hostileTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return dir
}

// tempFiles lists the regular files below dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	testutil.Must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	return files
}

// rawRequest opens a connection to base and sends head (request line and
// header lines, without the blank line) and then body.
func rawRequest(t *testing.T, base, head, body string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	testutil.Must(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, head+"\r\n\r\n"+body)
	testutil.Must(t, err)
	return c
}

// readStatus reads one response's status line and header from br, within
// 30 seconds.
func readStatus(t *testing.T, c net.Conn, br *bufio.Reader) (string, http.Header) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := br.ReadString('\n')
	testutil.Must(t, err)
	h := http.Header{}
	for {
		l, err := br.ReadString('\n')
		testutil.Must(t, err)
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		name, value, _ := strings.Cut(l, ":")
		h.Add(name, strings.TrimSpace(value))
	}
	return strings.TrimRight(line, "\r\n"), h
}

// TestCaddyETagTricklingWriter: a client sending a conditional PUT's body
// a byte at a time holds no lock: another writer's conditional PUT to the
// same resource is answered within a second, and the trickled write, whose
// client then leaves, never reaches the upstream.
func TestCaddyETagTricklingWriter(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag\n\treverse_proxy "+up.addr)[0]
	up.set("/doc", "v1", time.Now())
	e := wrGetETag(t, base+"/doc")

	c := rawRequest(t, base, "PUT /doc HTTP/1.1\r\nHost: gw\r\nIf-Match: "+e+"\r\nContent-Length: 1000", "")
	stop := make(chan struct{})
	var trickler sync.WaitGroup
	trickler.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	})
	time.Sleep(300 * time.Millisecond) // the trickled body is under way

	start := time.Now()
	r := wrDo(t, http.MethodPut, base+"/doc", "v2", "If-Match: "+e)
	if took := time.Since(start); r.status != http.StatusNoContent || took > time.Second {
		t.Fatalf("the other writer's PUT: %d after %s, want 204 within 1s; body %s", r.status, took, r.body)
	}
	close(stop)
	trickler.Wait()
	c.Close()
	wrEventuallyUnlocked(t)
	w := up.writesTo("/doc")
	if len(w) != 1 || string(w[0].body) != "v2" {
		t.Fatalf("the upstream saw %d writes (%v), want only the other writer's", len(w), w)
	}
}

// TestCaddyETagLockWait: while the upstream is stuck on the lock holder's
// PUT, a second write to that resource gets 503 with Retry-After and a
// problem body after lock_wait and is not forwarded, a write to another
// resource goes through, and the metrics count the timeout.
func TestCaddyETagLockWait(t *testing.T) {
	up := startWrUpstream(t)
	bases := wrSites(t, "\tetag {\n\t\tlock_wait 1s\n\t}\n\treverse_proxy "+up.addr, "\tmetrics /metrics")
	base := bases[0]
	up.set("/held", "v1", time.Now())
	up.set("/free", "v1", time.Now())
	e := wrGetETag(t, base+"/held")

	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	var heldPuts atomic.Int64
	up.mu.Lock()
	up.holdWrite = func(r *http.Request) error {
		if r.URL.Path == "/held" {
			heldPuts.Add(1)
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	up.mu.Unlock()
	holder := make(chan wrResp, 1)
	go func() {
		r, _ := wrSend(context.Background(), http.MethodPut, base+"/held", strings.NewReader("v2"), "If-Match: "+e)
		holder <- r
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's PUT never reached the upstream")
	}

	start := time.Now()
	r := wrDo(t, http.MethodPut, base+"/held", "v3", "If-Match: "+e)
	took := time.Since(start)
	wrProblem(t, "the waiter's PUT", r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("503 without Retry-After: 1 (%q)", r.header.Get("Retry-After"))
	}
	if took < time.Second || took > 6*time.Second {
		t.Errorf("503 after %s, want after lock_wait (1s) and not much later", took)
	}
	if r := wrDo(t, http.MethodPut, base+"/free", "w2", "If-Match: "+wrGetETag(t, base+"/free")); r.status != http.StatusNoContent {
		t.Fatalf("a PUT to another resource while /held is stuck: %d %s", r.status, r.body)
	}
	close(release)
	if r := <-holder; r.status != http.StatusNoContent {
		t.Fatalf("the holder's PUT: %d %s", r.status, r.body)
	}
	if n := heldPuts.Load(); n != 1 {
		t.Fatalf("the upstream saw %d PUTs to /held, want the holder's alone", n)
	}
	if got, _ := up.doc("/held"); got != "v2" {
		t.Fatalf("/held is %q, want the holder's v2", got)
	}
	m := wrDo(t, http.MethodGet, bases[1]+"/metrics", "")
	if want := `caddy_etag_requests_total{outcome="lock_timeout"} 1`; !strings.Contains(string(m.body), want+"\n") {
		t.Errorf("metrics lack %s", want)
	}
}

// stallingGets makes the upstream's GETs of u stall, while armed, until
// the request is cancelled or released.
type stallingGets struct {
	armed   atomic.Bool
	release chan struct{}
	entered chan struct{}
}

func stallGets(up *wrUpstream) *stallingGets {
	s := &stallingGets{release: make(chan struct{}), entered: make(chan struct{}, 16)}
	up.mu.Lock()
	up.afterRead = func(r *http.Request) {
		if !s.armed.Load() {
			return
		}
		s.entered <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
	}
	up.mu.Unlock()
	return s
}

// TestCaddyETagCheckTimeout: an upstream that stalls GETs makes a
// conditional write's check miss check_timeout: 504 with a problem body,
// soon after the deadline, and the upstream never sees the write. A read
// after a write that stalls leaves the write's 204 without an ETag. The
// lock is released either way, and the next write succeeds.
func TestCaddyETagCheckTimeout(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tcheck_timeout 1s\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/slow", "v1", time.Now())
	e := wrGetETag(t, base+"/slow")
	stall := stallGets(up)

	stall.armed.Store(true)
	start := time.Now()
	r := wrDo(t, http.MethodPut, base+"/slow", "v2", "If-Match: "+e)
	took := time.Since(start)
	wrProblem(t, "PUT whose check stalls", r, http.StatusGatewayTimeout)
	if took < time.Second || took > 5*time.Second {
		t.Errorf("504 after %s, want after check_timeout (1s) and not much later", took)
	}
	if n := len(up.writesTo("/slow")); n != 0 {
		t.Fatalf("the upstream saw %d writes after a check that timed out", n)
	}
	wrEventuallyUnlocked(t)

	stall.armed.Store(false)
	e = wrGetETag(t, base+"/slow")
	up.mu.Lock()
	up.holdWrite = func(*http.Request) error { stall.armed.Store(true); return nil } // the read after the write stalls
	up.mu.Unlock()
	start = time.Now()
	r = wrDo(t, http.MethodPut, base+"/slow", "v3", "If-Match: "+e)
	took = time.Since(start)
	if r.status != http.StatusNoContent || r.header.Get("ETag") != "" {
		t.Fatalf("PUT whose read after the write stalls: %d ETag %q, want 204 without ETag", r.status, r.header.Get("ETag"))
	}
	if took > 5*time.Second {
		t.Errorf("answered after %s, want soon after check_timeout (1s)", took)
	}
	up.mu.Lock()
	up.holdWrite = nil
	up.mu.Unlock()
	stall.armed.Store(false)
	wrEventuallyUnlocked(t)
	if r := wrDo(t, http.MethodPut, base+"/slow", "v4", "If-Match: "+wrGetETag(t, base+"/slow")); r.status != http.StatusNoContent {
		t.Fatalf("the next write: %d %s", r.status, r.body)
	}
	if got, _ := up.doc("/slow"); got != "v4" {
		t.Fatalf("/slow is %q, want v4", got)
	}
}

// TestCaddyETagClientGoneBeforeForward: a conditional PUT whose check GET
// stalls, and whose client then disconnects, is dropped: the upstream
// never sees it, even once the stall ends. (With the body left unread,
// Go's server did not notice the disconnect and the write went through.)
func TestCaddyETagClientGoneBeforeForward(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\tcheck_timeout 1m\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/gone", "v1", time.Now())
	e := wrGetETag(t, base+"/gone")
	stall := stallGets(up)
	stall.armed.Store(true)

	c := rawRequest(t, base, "PUT /gone HTTP/1.1\r\nHost: gw\r\nIf-Match: "+e+"\r\nContent-Length: 2", "v2")
	select {
	case <-stall.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the check GET never reached the upstream")
	}
	c.Close()
	time.Sleep(200 * time.Millisecond) // give a gateway that did not notice time to forward
	close(stall.release)
	wrEventuallyUnlocked(t)
	stall.armed.Store(false)
	if w := up.writesTo("/gone"); len(w) != 0 {
		t.Fatalf("the upstream applied %d writes whose client had gone", len(w))
	}
	if r := wrDo(t, http.MethodPut, base+"/gone", "v3", "If-Match: "+e); r.status != http.StatusNoContent {
		t.Fatalf("the next write with the same ETag: %d %s", r.status, r.body)
	}
}

// TestCaddyETagExpectContinue: a client that waits for 100 Continue is
// refused (400, 428, 412) before it sends the body when the gateway can
// tell; a write that may go on gets 100 Continue, then its answer.
func TestCaddyETagExpectContinue(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\trequire_precondition\n\t}\n\treverse_proxy "+up.addr)[0]
	up.set("/ask", "v1", time.Now())
	e := wrGetETag(t, base+"/ask")
	for _, c := range []struct {
		name, header, want string
	}{
		{"stale", `If-Match: "stale"`, "HTTP/1.1 412 "},
		{"no precondition", "X-None: 1", "HTTP/1.1 428 "},
		{"malformed", "If-Match: abc", "HTTP/1.1 400 "},
		{"current", "If-Match: " + e, "HTTP/1.1 100 "},
	} {
		conn := rawRequest(t, base, "PUT /ask HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"+c.header, "")
		br := bufio.NewReader(conn)
		status, _ := readStatus(t, conn, br)
		if !strings.HasPrefix(status, c.want) {
			t.Fatalf("%s: first answer %q, want %q", c.name, status, c.want)
		}
		if c.want != "HTTP/1.1 100 " {
			continue
		}
		_, err := io.WriteString(conn, "v2")
		testutil.Must(t, err)
		if status, _ := readStatus(t, conn, br); !strings.HasPrefix(status, "HTTP/1.1 204 ") {
			t.Fatalf("%s: after the body: %q, want 204", c.name, status)
		}
	}
	if w := up.writesTo("/ask"); len(w) != 1 || string(w[0].body) != "v2" {
		t.Fatalf("the upstream saw %v, want one PUT of v2", w)
	}
}

// TestCaddyETagSpoolBrokenBody: an upstream body that breaks off while it
// is being spooled to a temporary file gives a problem answer, removes the
// file, and leaves nothing cached: once the upstream is well, the ETag is
// that of the whole body.
func TestCaddyETagSpoolBrokenBody(t *testing.T) {
	tmp := hostileTempDir(t)
	const size = 4 << 20
	var broken atomic.Bool
	broken.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(http.StatusOK)
		n := int64(size)
		if broken.Load() {
			n = size / 2
		}
		_, _ = io.Copy(w, io.LimitReader(&wrPattern{}, n))
		if broken.Load() {
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
				conn.Close()
			}
		}
	}))
	defer srv.Close()
	bases := wrSites(t, "\tetag {\n\t\tbuffer_memory 64KiB\n\t\tverify cache\n\t}\n\treverse_proxy "+strings.TrimPrefix(srv.URL, "http://"), "\tmetrics /metrics")

	r := wrDo(t, http.MethodGet, bases[0]+"/big", "")
	if r.status == http.StatusOK || r.header.Get("ETag") != "" {
		t.Fatalf("a body broken off mid-spool: %d ETag %q, want an error without ETag", r.status, r.header.Get("ETag"))
	}
	if r.status != http.StatusBadGateway {
		t.Errorf("status %d, want 502", r.status)
	}
	testutil.Eventually(t, "no temporary file is left", func() bool { return len(tempFiles(t, tmp)) == 0 })
	m := string(wrDo(t, http.MethodGet, bases[1]+"/metrics", "").body)
	for _, want := range []string{`caddy_etag_buffered_bytes{storage="disk"} 0`, `caddy_etag_buffered_bytes{storage="memory"} 0`, `caddy_etag_spills_total 1`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}

	broken.Store(false)
	h := hashing.XXH3.New()
	_, _ = io.Copy(h, io.LimitReader(&wrPattern{}, size))
	want := string(h.AppendETag(nil))
	r = wrDo(t, http.MethodGet, bases[0]+"/big", "")
	if r.status != http.StatusOK || r.header.Get("ETag") != want || len(r.body) != size {
		t.Fatalf("GET once the upstream is well: %d, %d bytes, ETag %q; want 200, %d bytes, %s", r.status, len(r.body), r.header.Get("ETag"), size, want)
	}
	if files := tempFiles(t, tmp); len(files) != 0 {
		t.Fatalf("temporary files left: %v", files)
	}
}

// hostileConfig is the reload test's site; generation makes each reload a
// configuration of its own.
func hostileConfig(port int, upstream string, generation int) string {
	return fmt.Sprintf(`:%d {
	bind 127.0.0.1
	etag {
		buffer_memory 1KiB
		ttl %ds
	}
	reverse_proxy %s
}
`, port, 600+generation%2, upstream)
}

// TestCaddyETagReloadUnderWrites: Caddy reloaded every 200 ms while 32
// writers make read-modify-write increments of one counter: no increment
// is lost, the only 5xx are 503s with Retry-After, and afterwards no
// goroutine and no temporary file is left. Every body goes to a temporary
// file (buffer_memory 1KiB), so the files' lifecycle is exercised across
// the reloads.
func TestCaddyETagReloadUnderWrites(t *testing.T) {
	const writers, per = 32, 4
	tmp := hostileTempDir(t)
	counter := &wrCounter{}
	srv := httptest.NewServer(counter)
	defer srv.Close()
	upstream := strings.TrimPrefix(srv.URL, "http://")
	port := testutil.FreePort(t)
	goroutines := runtime.NumGoroutine()
	testutil.Load(t, hostileConfig(port, upstream, 0))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = caddy.Stop()
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.WaitListening(t, strings.TrimPrefix(base, "http://"))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}

	stop := make(chan struct{})
	var reloader sync.WaitGroup
	var reloads atomic.Int64
	reloader.Go(func() {
		for g := 1; ; g++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			testutil.Load(t, hostileConfig(port, upstream, g))
			reloads.Add(1)
		}
	})
	var ok, unavailable, redials atomic.Int64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for done := 0; done < per; {
				status, hdr, body, err := hostileDo(client, http.MethodGet, base+"/counter", "", "")
				if notSent(err) {
					redials.Add(1)
					continue
				}
				if err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("GET: %d %v", status, err)
					return
				}
				n, err := strconv.Atoi(strings.TrimSpace(body))
				if err != nil {
					errs <- err
					return
				}
				status, hdr, body, err = hostileDo(client, http.MethodPut, base+"/counter", strconv.Itoa(n+1), hdr.Get("ETag"))
				switch {
				case notSent(err):
					redials.Add(1)
				case err != nil:
					errs <- fmt.Errorf("PUT: %w", err)
					return
				case status == http.StatusNoContent:
					done++
					ok.Add(1)
				case status == http.StatusPreconditionFailed:
				case status == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "":
					unavailable.Add(1)
				default:
					errs <- fmt.Errorf("PUT: %d %s", status, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	reloader.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d increments, %d 503s, %d reloads, %d requests retried after a connection closed unanswered", ok.Load(), unavailable.Load(), reloads.Load(), redials.Load())
	if reloads.Load() < 3 {
		t.Fatalf("only %d reloads happened during the writes", reloads.Load())
	}
	if got := counter.value(); got != int(ok.Load()) || ok.Load() != writers*per {
		t.Fatalf("%d increments succeeded, the counter is %d: %d lost", ok.Load(), got, int(ok.Load())-got)
	}
	testutil.Eventually(t, "no temporary file is left", func() bool { return len(tempFiles(t, tmp)) == 0 })
	// Caddy's own goroutines and the upstream connections its transports
	// keep go with the configuration; anything of the handlers' left after
	// that is a leak.
	testutil.Must(t, caddy.Stop())
	stopped = true
	srv.CloseClientConnections()
	client.CloseIdleConnections()
	testutil.Eventually(t, "the goroutines are back to their number before Caddy started", func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("left in the temporary directory after Caddy stopped: %v", entries)
	}
}

// notSent reports whether err is a connection refused, reset or closed
// before any answer: a reload hands the listener over while the old server
// shuts down, and a connection caught between the two is closed unread.
// The writers retry such a request; had one been applied all the same, the
// counter would end above the increments that succeeded, which the test
// checks.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// hostileDo sends one request, with If-Match when etag is set, and reads
// its whole answer.
func hostileDo(c *http.Client, method, u, body, etag string) (int, http.Header, string, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	if etag != "" {
		req.Header.Set("If-Match", etag)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b), err
}

var slowReaderBudget = flag.String("slow-reader-budget", "32MiB", "buffer_memory of TestCaddyETagSlowReaders; its growth bound is this plus a constant")

// gatewayMemory reads a gateway process's Go heap in use (through the
// admin endpoint's expvar) and its resident set size, after a GC.
func gatewayMemory(t *testing.T, admin string, pid int) (heap, rss uint64) {
	t.Helper()
	_, _ = http.Get(admin + "/debug/pprof/heap?gc=1")
	res, err := http.Get(admin + "/debug/vars")
	testutil.Must(t, err)
	defer res.Body.Close()
	var vars struct {
		Memstats struct{ HeapInuse uint64 } `json:"memstats"`
	}
	testutil.Must(t, json.NewDecoder(res.Body).Decode(&vars))
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	testutil.Must(t, err)
	for l := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			testutil.Must(t, err)
			rss = kb << 10
		}
	}
	return vars.Memstats.HeapInuse, rss
}

// slowBodies gives each resource an 8 MiB body of its own: a shared random
// block whose first 8 bytes are the resource's number, so that serving and
// checking them is cheap even under the race detector.
type slowBodies []byte

func newSlowBodies(size int) slowBodies {
	b := make([]byte, size)
	_, _ = mathrand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func (s slowBodies) body(i int) io.Reader {
	var head [8]byte
	binary.BigEndian.PutUint64(head[:], uint64(i))
	return io.MultiReader(bytes.NewReader(head[:]), bytes.NewReader(s[8:]))
}

// TestCaddyETagSlowReaders: 300 connections request an 8 MiB body each and
// read nothing. The gateway (a process of its own, so that its figures are
// its alone) holds at most buffer_memory of them in memory and the rest in
// temporary files: its heap and its resident set grow by at most the
// budget plus a constant. Then every body is read in full and matches its
// ETag and its resource, and no temporary file is left.
func TestCaddyETagSlowReaders(t *testing.T) {
	const conns, size = 300, 8 << 20
	budget, err := humanize.ParseBytes(*slowReaderBudget)
	testutil.Must(t, err)
	const slack = 64 << 20 // goroutines, connection buffers, Caddy itself
	bin, err := testutil.BuildCaddy(t.TempDir())
	testutil.Must(t, err)
	tmp := hostileTempDir(t)
	bodies := newSlowBodies(size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/big/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = io.Copy(w, bodies.body(i))
	}))
	defer srv.Close()
	adminPort, metricsPort := testutil.FreePort(t), testutil.FreePort(t)
	gw := testutil.StartProcess(t, bin, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:{port} {
	bind 127.0.0.1
	etag {
		buffer_memory %d
	}
	reverse_proxy %s
}
:%d {
	bind 127.0.0.1
	metrics /metrics
}
`, adminPort, budget, strings.TrimPrefix(srv.URL, "http://"), metricsPort))
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	heap0, rss0 := gatewayMemory(t, admin, gw.PID())

	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = rawRequest(t, gw.URL, fmt.Sprintf("GET /big/%d HTTP/1.1\r\nHost: gw", i), "")
	}
	held := func() (memory, disk float64) {
		res, err := http.Get(metrics)
		if err != nil {
			return 0, 0
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, `caddy_etag_buffered_bytes{storage="memory"} `); ok {
				memory, _ = strconv.ParseFloat(v, 64)
			}
			if v, ok := strings.CutPrefix(l, `caddy_etag_buffered_bytes{storage="disk"} `); ok {
				disk, _ = strconv.ParseFloat(v, 64)
			}
		}
		return memory, disk
	}
	// 2.4 GiB cross loopback and disk first: a generous bound, since the
	// machine may be busy with more than this test.
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		m, d := held()
		if m+d >= conns*size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 minutes the gateway holds %.0f MiB in memory and %.0f MiB on disk of the %d MiB requested", m/(1<<20), d/(1<<20), conns*size>>20)
		}
	}
	heap1, rss1 := gatewayMemory(t, admin, gw.PID())
	m, d := held()
	t.Logf("buffer_memory %d MiB; held in memory %.0f MiB, on disk %.0f MiB; heap %d → %d MiB (+%d), RSS %d → %d MiB (+%d)",
		budget>>20, m/(1<<20), d/(1<<20), heap0>>20, heap1>>20, (int64(heap1)-int64(heap0))>>20, rss0>>20, rss1>>20, (int64(rss1)-int64(rss0))>>20)
	if m > float64(budget) {
		t.Errorf("%.0f bytes in memory, over buffer_memory %d", m, budget)
	}
	if grow := int64(heap1) - int64(heap0); grow > int64(budget)+slack {
		t.Errorf("the heap grew by %d MiB, over the budget plus %d MiB", grow>>20, slack>>20)
	}
	if grow := int64(rss1) - int64(rss0); grow > int64(budget)+slack {
		t.Errorf("the resident set grew by %d MiB, over the budget plus %d MiB", grow>>20, slack>>20)
	}

	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- fmt.Errorf("conn %d: %w", i, err)
				return
			}
			defer res.Body.Close()
			got, want := hashing.XXH3.New(), hashing.XXH3.New()
			n, err := io.Copy(got, res.Body)
			_, _ = io.Copy(want, bodies.body(i))
			tag := res.Header.Get("ETag")
			switch {
			case err != nil || n != size || res.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("conn %d: %d, %d bytes, %v", i, res.StatusCode, n, err)
			case tag != string(got.AppendETag(nil)):
				errs <- fmt.Errorf("conn %d: ETag %s does not match the body", i, tag)
			case tag != string(want.AppendETag(nil)):
				errs <- fmt.Errorf("conn %d: the body is not /big/%d's", i, i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	testutil.Eventually(t, "no temporary file is left", func() bool { return len(tempFiles(t, tmp)) == 0 })
	// A handler releases its body just after the client has read the last
	// byte, so the gauges may reach 0 a moment after the client is done.
	testutil.Eventually(t, "nothing is held in memory or on disk after every response", func() bool {
		m, d := held()
		return m == 0 && d == 0
	})
}
