package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Must fails the test on a non-nil error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Eventually polls cond until it holds, failing the test after 20s. The
// bound is generous on purpose: it asserts behaviour, not speed.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// RawExchange sends a raw HTTP/1.1 request (with Connection: close and the
// given "Name: value" header lines) to baseURL and returns the response's
// status line, its header and every byte after the header, so that nothing
// the client library hides (such as a body on a 304) goes unseen.
func RawExchange(t testing.TB, baseURL, method, path string, header ...string) (status string, head http.Header, rest []byte) {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, u.Host)
	for _, h := range header {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading raw response: %v", err)
	}
	headText, body, ok := bytes.Cut(all, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of header in %q", all)
	}
	lines := strings.Split(string(headText), "\r\n")
	head = http.Header{}
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ":")
		head.Add(name, strings.TrimSpace(value))
	}
	return lines[0], head, body
}

// ReadEvent reads one server-sent event from r, up to the blank line that
// ends it, and returns its lines.
func ReadEvent(r *bufio.Reader) (string, error) {
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev.String(), err
		}
		if line == "\n" {
			return ev.String(), nil
		}
		ev.WriteString(line)
	}
}
