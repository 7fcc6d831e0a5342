//go:build linux

package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// TestFSNotifyTakenOver checks an HTTP/1.1 stream through Caddy, with its
// access log on: the connection is taken over (no goroutine serves it),
// the response stays chunked, and events and keep-alives arrive.
func TestFSNotifyTakenOver(t *testing.T) {
	root := t.TempDir()
	port := testutil.FreePort(t)
	testutil.Load(t, fmt.Sprintf(`:%d {
	bind 127.0.0.1
	log {
		output discard
	}
	route {
		fs_notify {
			root %s
			batch 10ms
			keepalive 100ms
		}
	}
}
`, port, root))
	t.Cleanup(func() { _ = caddy.Stop() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	var streams []*ssetest.Stream
	for range 3 {
		streams = append(streams, ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), ""), nil))
	}
	for _, s := range streams {
		if te := s.Resp.TransferEncoding; !slices.Equal(te, []string{"chunked"}) {
			t.Errorf("Transfer-Encoding %v, want chunked", te)
		}
	}
	writeFile(t, filepath.Join(root, "f"), "x")
	for _, s := range streams {
		s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "f") })
	}
	// Once events flow, a stream served by a goroutine would be in it.
	if g := ssetest.ServingGoroutines(); g != 0 {
		t.Errorf("%d goroutines serve HTTP/1.1 streams, want none", g)
	}
	deadline := time.Now().Add(arrive)
	for !slices.Contains(streams[0].Comments(), ": keepalive") {
		if time.Now().After(deadline) {
			t.Fatal("no keep-alive comment")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFSNotifyStopEndsStreams stops Caddy under open streams: each ends
// cleanly with a closing comment.
func TestFSNotifyStopEndsStreams(t *testing.T) {
	root := t.TempDir()
	base := startNotify(t, root)
	var streams []*ssetest.Stream
	for i := range 4 {
		streams = append(streams, ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), fmt.Sprintf("recursive=%v", i%2 == 0)), nil))
	}
	writeFile(t, filepath.Join(root, "f"), "x")
	for _, s := range streams {
		s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "f") })
	}
	if g := ssetest.ServingGoroutines(); g != 0 {
		t.Errorf("%d goroutines serve HTTP/1.1 streams, want none", g)
	}
	testutil.Must(t, caddy.Stop())
	for _, s := range streams {
		if _, ended := s.Ended(arrive); !ended {
			t.Fatal("stream still open after stop")
		}
		if !errors.Is(s.Err(), io.EOF) {
			t.Errorf("stream ended with %v, want a clean end", s.Err())
		}
		if c := s.Comments(); c[len(c)-1] != ": closing" {
			t.Errorf("last comment %q, want \": closing\"", c[len(c)-1])
		}
	}
}

// TestFSNotifyHTTP2 streams over cleartext HTTP/2 (h2c) through Caddy:
// such a stream shares its connection and keeps its goroutine; events
// arrive and a reload ends it cleanly.
func TestFSNotifyHTTP2(t *testing.T) {
	root := t.TempDir()
	port := testutil.FreePort(t)
	site := func(keepalive string) []byte {
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
			batch 10ms
			keepalive %s
		}
	}
}
`, port, root, keepalive))
	}
	testutil.Must(t, caddy.Load(site("15s"), true))
	t.Cleanup(func() { _ = caddy.Stop() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protos}}
	s := ssetest.MustOpen(t, client, notifyURL(base, encRef("/"), ""), nil)
	if s.Resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", s.Resp.Proto)
	}
	writeFile(t, filepath.Join(root, "over-h2"), "")
	s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", "over-h2") })
	if g := ssetest.ServingGoroutines(); g != 1 {
		t.Errorf("%d goroutines serve the HTTP/2 stream, want 1", g)
	}

	testutil.Must(t, caddy.Load(site("5s"), true))
	if _, ended := s.Ended(arrive); !ended {
		t.Fatal("HTTP/2 stream of the old configuration still open after reload")
	}
	if !errors.Is(s.Err(), io.EOF) {
		t.Errorf("stream ended with %v, want a clean end", s.Err())
	}
	if c := s.Comments(); c[len(c)-1] != ": closing" {
		t.Errorf("last comment %q, want \": closing\"", c[len(c)-1])
	}
}
