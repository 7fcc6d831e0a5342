// Package testutil holds what the tests of several packages share: Caddy
// run in-process for integration tests, and small helpers (Must,
// Eventually, RawExchange, ReadEvent).
//
// Caddy keeps one running configuration per process, so tests that use
// Start must not run in parallel with each other.
package testutil

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the "caddyfile" adapter
)

// handedOut holds the ports FreePort returned in this test binary: the
// kernel may offer a port again as soon as its listener is closed, and two
// sites of one configuration on one port do not start.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that it has not returned before.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}

// Adapt turns a Caddyfile into Caddy JSON, failing the test on any error or
// warning.
func Adapt(t testing.TB, caddyfile string) []byte {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Fatalf("adapting Caddyfile: warning at line %d: %s", w.Line, w.Message)
	}
	return cfg
}

// Load adapts and loads caddyfile as the process's running configuration.
// Global options are prepended (admin off, persist_config off, auto_https
// off, logs at ERROR only), so callers write only site blocks.
func Load(t testing.TB, caddyfile string) {
	t.Helper()
	LoadWith(t, "", caddyfile)
}

// LoadWith is Load with more global options, such as an etaggate block,
// written unindented.
func LoadWith(t testing.TB, globals, caddyfile string) {
	t.Helper()
	if globals != "" {
		globals = "\t" + strings.ReplaceAll(strings.TrimSpace(globals), "\n", "\n\t") + "\n"
	}
	full := "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\tlevel ERROR\n\t}\n" + globals + "}\n" + caddyfile
	if err := caddy.Load(Adapt(t, full), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// Start loads caddyfile, in which every "{port}" is replaced by a free
// port, waits until the server accepts connections and stops it when the
// test ends. It returns the base URL, http://127.0.0.1:<port>.
func Start(t testing.TB, caddyfile string) string {
	t.Helper()
	return StartWith(t, "", caddyfile)
}

// StartWith is Start with more global options (see LoadWith).
func StartWith(t testing.TB, globals, caddyfile string) string {
	t.Helper()
	port := FreePort(t)
	caddyfile = strings.ReplaceAll(caddyfile, "{port}", fmt.Sprint(port))
	LoadWith(t, globals, caddyfile)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return base
}

// WaitListening waits up to 20s for addr to accept TCP connections: a
// gateway built with -race starts slowly on a busy machine.
func WaitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Client returns an HTTP client that never follows redirects nor asks for
// compression behind the test's back.
func Client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}
}
