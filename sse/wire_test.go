//go:build linux

package sse

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// rawStream is a stream read over a bare connection, with no goroutine of
// its own, so that a test can count the server's goroutines.
type rawStream struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

// dialRaw opens a stream with a request of the given protocol version;
// rcvbuf, if not 0, shrinks the client's receive buffer. It returns once
// the first comment has been read.
func dialRaw(t *testing.T, base, path, proto string, rcvbuf int) *rawStream {
	t.Helper()
	d := net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	host := strings.TrimPrefix(base, "http://")
	conn, err := d.Dial("tcp", host)
	testutil.Must(t, err)
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s %s\r\nHost: %s\r\n\r\n", path, proto, host)
	testutil.Must(t, conn.SetReadDeadline(time.Now().Add(arrive)))
	br := bufio.NewReaderSize(conn, 1024)
	req, _ := http.NewRequest("GET", base+path, nil)
	resp, err := http.ReadResponse(br, req)
	testutil.Must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	line := make([]byte, len(openingComment))
	_, err = io.ReadFull(resp.Body, line)
	testutil.Must(t, err)
	if !bytes.Equal(line, openingComment) {
		t.Fatalf("first bytes %q, want %q", line, openingComment)
	}
	testutil.Must(t, conn.SetReadDeadline(time.Time{}))
	return &rawStream{conn: conn, br: br, resp: resp}
}

// until reads the body up to and including the first occurrence of want.
func (r *rawStream) until(t *testing.T, want string) string {
	t.Helper()
	testutil.Must(t, r.conn.SetReadDeadline(time.Now().Add(arrive)))
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		k, err := r.resp.Body.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			t.Fatalf("reading until %q: %v; read %q", want, err, got)
		}
	}
	return string(got)
}

// TestTakenOverStreams checks the streams the hub's wires write:
// HTTP/1.1 keeps its chunked framing and ends with the last chunk,
// HTTP/1.0 ends with the connection; no goroutine is left per stream; a
// client that hangs up frees its place at once; Close ends the rest.
func TestTakenOverStreams(t *testing.T) {
	cfg := testConfig()
	cfg.Batch, cfg.Keepalive, cfg.MaxSubscribers = time.Millisecond, 50*time.Millisecond, 100
	n, err := New(cfg, new(notes), nil)
	testutil.Must(t, err)
	srv := httptest.NewServer(handler(n))
	defer srv.Close()
	defer n.Close()
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	baseline := runtime.NumGoroutine()

	const streams = 40
	var raw []*rawStream
	for i := range streams {
		proto := []string{"HTTP/1.1", "HTTP/1.0"}[i%2]
		raw = append(raw, dialRaw(t, srv.URL, "/?key=k", proto, 0))
	}
	testutil.Eventually(t, "every stream taken over", func() bool { return n.Stats().TakenOver == streams })
	if g := runtime.NumGoroutine() - baseline; g >= streams/4 {
		t.Errorf("%d more goroutines for %d streams", g, streams)
	}
	if g := ssetest.ServingGoroutines(); g != 0 {
		t.Errorf("%d streams served by a goroutine", g)
	}
	for i, r := range raw {
		te := r.resp.TransferEncoding
		if i%2 == 0 && !slices.Equal(te, []string{"chunked"}) || i%2 == 1 && len(te) != 0 {
			t.Errorf("%s: Transfer-Encoding %v", r.resp.Proto, te)
		}
		if r.resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("Content-Type %q", r.resp.Header.Get("Content-Type"))
		}
		if i%2 == 0 && !r.resp.Close {
			t.Errorf("%s: the response does not say the connection closes with it", r.resp.Proto)
		}
	}

	n.Publish(note{"k", "first"})
	for _, r := range raw {
		got := r.until(t, `"first"`)
		if !strings.Contains(got, "id: ") || !strings.Contains(got, "\ndata: [") {
			t.Errorf("%s: %q is not an event", r.resp.Proto, got)
		}
		r.until(t, ": keepalive\n\n")
	}

	// Half the clients hang up: their places are freed without a write.
	for _, r := range raw[:streams/2] {
		r.conn.Close()
	}
	testutil.Eventually(t, "departed clients unsubscribed", func() bool { return n.Stats().Subscribers == streams/2 })
	if st := n.Stats(); st.TakenOver != streams/2 {
		t.Errorf("%d taken-over streams after half left, want %d", st.TakenOver, streams/2)
	}

	testutil.Must(t, n.Close())
	for _, r := range raw[streams/2:] {
		testutil.Must(t, r.conn.SetReadDeadline(time.Now().Add(arrive)))
		rest, err := io.ReadAll(r.resp.Body)
		if err != nil {
			t.Errorf("%s: stream did not end cleanly: %v", r.resp.Proto, err)
		}
		if !bytes.HasSuffix(rest, []byte(": closing\n\n")) {
			t.Errorf("%s: stream ended with %q, want a closing comment", r.resp.Proto, rest)
		}
	}
	deadline := time.Now().Add(arrive)
	for runtime.NumGoroutine() > baseline-3 && time.Now().Before(deadline) { // the hub's own are gone too
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseline-3 {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Errorf("%d goroutines after Close, %d with the hub running:\n%s", g, baseline, buf.String())
	}
}

// TestTakenOverReplay checks that a reconnecting client whose connection
// is taken over gets what it missed, after the first comment.
func TestTakenOverReplay(t *testing.T) {
	n, _, base := startHub(t, testConfig(), nil)
	s := ssetest.MustOpen(t, client(), base+"/?key=k", nil)
	n.Publish(note{"k", "a"})
	ev := nextEvent(t, s)
	s.Close()
	n.Publish(note{"k", "missed"})
	testutil.Eventually(t, "the second frame", func() bool { return n.Stats().Frames >= 2 })

	again := ssetest.MustOpen(t, client(), base+"/?key=k", http.Header{"Last-Event-ID": {ev.ID}})
	if got := texts(t, nextEvent(t, again)); !slices.Equal(got, []string{"missed"}) {
		t.Errorf("replayed %v, want the missed note alone", got)
	}
	if st := n.Stats(); st.TakenOver != 1 {
		t.Errorf("%d streams taken over, want 1", st.TakenOver)
	}
}

// TestTakenOverSlowSubscriber stalls one taken-over client while another
// reads: the fast one receives everything, the stalled one is sent an
// overflow event and its stream ends cleanly, once it reads again.
func TestTakenOverSlowSubscriber(t *testing.T) {
	cfg := testConfig()
	cfg.Batch, cfg.Queue = time.Millisecond, 4
	n, _, base := startHub(t, cfg, nil)
	stalled := dialRaw(t, base, "/?key=k", "HTTP/1.1", 4096)
	fast := ssetest.MustOpen(t, client(), base+"/?key=k", nil)
	testutil.Eventually(t, "both streams taken over", func() bool { return n.Stats().TakenOver == 2 })
	var fastGot atomic.Int64
	go func() {
		for {
			ev, err := fast.Next(time.Hour)
			if err != nil {
				return
			}
			var ns []string
			if json.Unmarshal([]byte(ev.Data), &ns) != nil {
				return // an overflow: the count falls short
			}
			fastGot.Add(int64(len(ns)))
		}
	}()

	// Published until the stalled one is cut off: how much its socket
	// buffers and its writer hold depends on the kernel and the load.
	pad := strings.Repeat("x", 2000)
	notes := 0
	for ; notes < 60000; notes++ {
		if notes%50 == 0 {
			if n.Stats().CutOff > 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		n.Publish(note{"k", fmt.Sprintf("%05d %s", notes, pad)})
	}
	if n.Stats().CutOff == 0 {
		testutil.Eventually(t, "the stalled subscriber cut off", func() bool { return n.Stats().CutOff > 0 })
	}

	testutil.Must(t, stalled.conn.SetReadDeadline(time.Now().Add(arrive)))
	rest, err := io.ReadAll(stalled.resp.Body)
	if err != nil {
		t.Fatalf("stalled stream did not end cleanly: %v (read %d bytes)", err, len(rest))
	}
	events := bytes.Split(bytes.TrimSpace(rest), []byte("\n\n"))
	if last := string(events[len(events)-1]); !strings.Contains(last, "event: overflow") || !strings.Contains(last, `"reason":"subscriber_queue"`) {
		t.Errorf("stalled stream's last event is %q, want an overflow event", last)
	}
	if k := bytes.Count(rest, []byte(pad)); k >= notes {
		t.Errorf("stalled subscriber received all %d notes; it was never cut off", k)
	}
	testutil.Eventually(t, fmt.Sprintf("the fast subscriber received all %d notes", notes), func() bool { return fastGot.Load() == int64(notes) })
	if st := n.Stats(); st.CutOff != 1 {
		t.Errorf("%d subscribers cut off, want 1", st.CutOff)
	}
}

// TestStreamsNotTakenOver checks the streams that keep a goroutine: HTTP/2
// and HTTP/1.1 over TLS.
func TestStreamsNotTakenOver(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(map[bool]string{true: "HTTP/2", false: "HTTP/1.1 over TLS"}[h2], func(t *testing.T) {
			cfg := testConfig()
			cfg.Batch, cfg.Keepalive = time.Millisecond, 50*time.Millisecond
			n, err := New(cfg, new(notes), nil)
			testutil.Must(t, err)
			srv := httptest.NewUnstartedServer(handler(n))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			defer srv.Close()
			defer n.Close()
			c := srv.Client()
			if !h2 {
				c.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			s := ssetest.MustOpen(t, c, srv.URL+"/?key=k", nil)
			if s.Resp.ProtoMajor != map[bool]int{true: 2, false: 1}[h2] {
				t.Fatalf("served over %s", s.Resp.Proto)
			}
			n.Publish(note{"k", "f"})
			if got := texts(t, nextEvent(t, s)); !slices.Equal(got, []string{"f"}) {
				t.Errorf("got %v", got)
			}
			testutil.Eventually(t, "a keep-alive comment", func() bool { return slices.Contains(s.Comments(), ": keepalive") })
			if st := n.Stats(); st.TakenOver != 0 || st.Subscribers != 1 {
				t.Errorf("%d streams taken over of %d", st.TakenOver, st.Subscribers)
			}
			if g := ssetest.ServingGoroutines(); g != 1 {
				t.Errorf("%d goroutines serving streams, want 1", g)
			}
			testutil.Must(t, n.Close())
			if _, ended := s.Ended(arrive); !ended || s.Err() != io.EOF {
				t.Errorf("stream after Close: ended %v, %v", ended, s.Err())
			}
			if c := s.Comments(); c[len(c)-1] != ": closing" {
				t.Errorf("last comment %q, want \": closing\"", c[len(c)-1])
			}
		})
	}
}
