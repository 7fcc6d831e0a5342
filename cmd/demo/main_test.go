package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/etaggate/etaggate/internal/legacyapi"
	"github.com/etaggate/etaggate/internal/testutil"
)

// TestMain lets TestDemoEndToEnd run this test binary as the demo command
// itself, so the test needs no separate build.
func TestMain(m *testing.M) {
	if os.Getenv("ETAGGATE_DEMO_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestInspect(t *testing.T) {
	adapted := []byte(`{"apps":{"http":{"servers":{
		"srv0":{"listen":[":8080"],"routes":[{"handle":[{"handler":"subroute","routes":[
			{"handle":[{"handler":"fs_notify","root":"demo/files"}]},
			{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:9080"}]}]}]}]}]},
		"srv1":{"listen":["127.0.0.1:8443","tcp/[::1]:9000"],"routes":[{"handle":[{"handler":"fs_notify","root":"/srv/x"}]}]}}}}}`)
	urls, roots, err := inspect(adapted)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://127.0.0.1:8443", "http://[::1]:9000", "http://localhost:8080"}; !reflect.DeepEqual(urls, want) {
		t.Errorf("urls = %q, want %q", urls, want)
	}
	if len(roots) != 2 || !(roots[0] == "demo/files" && roots[1] == "/srv/x" || roots[1] == "demo/files" && roots[0] == "/srv/x") {
		t.Errorf("roots = %q, want demo/files and /srv/x", roots)
	}

	if _, _, err := inspect([]byte(`{"apps":{"http":{"servers":{"s":{"listen":["nope:port"]}}}}}`)); err == nil {
		t.Error("a bad listen address was accepted")
	}
	if _, _, err := inspect([]byte(`not json`)); err == nil {
		t.Error("bad JSON was accepted")
	}
}

// writeCaddyfile writes a Caddyfile that needs only Caddy's standard
// modules and returns its path.
func writeCaddyfile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrepareErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	good := writeCaddyfile(t, fmt.Sprintf("{\n\tadmin off\n}\n:%d {\n\treverse_proxy %s\n}\n", testutil.FreePort(t), busy.Addr()))
	bad := writeCaddyfile(t, ":1 {\n\tno_such_directive\n}\n")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing config", []string{"-config", filepath.Join(t.TempDir(), "Caddyfile.example")}, "run this from the repository root"},
		{"config that does not adapt", []string{"-config", bad}, "no_such_directive"},
		{"API port taken", []string{"-config", good, "-api", busy.Addr().String()}, "starting the legacy API"},
		{"stray argument", []string{"-config", good, "extra"}, "unexpected arguments"},
		{"unknown flag", []string{"-port", "1"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			d, err := prepare(tt.args, &stderr)
			if err == nil {
				d.api.Close()
				t.Fatalf("prepare(%q) = %q, want an error", tt.args, d.caddyArgs)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("prepare(%q) error %q does not mention %q", tt.args, err, tt.want)
			}
		})
	}
}

// TestPrepareServesAPI runs prepare as the command does and talks to the
// legacy API it started on a real port.
func TestPrepareServesAPI(t *testing.T) {
	api := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	config := writeCaddyfile(t, fmt.Sprintf("{\n\tadmin off\n}\n:%d {\n\treverse_proxy %s\n}\n", testutil.FreePort(t), api))
	var stderr bytes.Buffer
	d, err := prepare([]string{"-api", api, "-config", config}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.api.Close()
	if want := []string{"run", "--config", config, "--adapter", "caddyfile"}; !reflect.DeepEqual(d.caddyArgs, want) {
		t.Errorf("caddy arguments = %q, want %q", d.caddyArgs, want)
	}
	if !strings.Contains(string(d.adapted), `"dial":"`+api+`"`) {
		t.Errorf("the adapted configuration does not proxy to %s: %s", api, d.adapted)
	}
	resp, err := http.Get("http://" + api + "/items/1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"count":0,"name":"widget"}`+"\n" || resp.Header.Get("ETag") != "" {
		t.Errorf("GET /items/1 = %d %q ETag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
}

func requireModules(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := caddy.GetModule(id); err != nil {
			t.Skipf("module %s is not registered yet: %v", id, err)
		}
	}
}

type exchange struct {
	method, path, body string
	header             []string
}

func send(t *testing.T, base string, ex exchange) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if ex.body != "" {
		rd = strings.NewReader(ex.body)
	}
	req, err := http.NewRequest(ex.method, base+ex.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(ex.header); i += 2 {
		req.Header.Set(ex.header[i], ex.header[i+1])
	}
	resp, err := testutil.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// walkthrough is the README's story against a gateway at base: a GET gets
// an ETag, the ETag gets a 304, a PATCH with it succeeds and returns the new
// one, a write with the stale one is refused before reaching the API, and a
// PUT the API stores re-formatted succeeds without an ETag (RFC 9110 §9.3.4).
func walkthrough(t *testing.T, base string) {
	t.Helper()
	resp, body := send(t, base, exchange{method: "GET", path: "/items/1"})
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !strings.Contains(body, `"widget"`) || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("GET /items/1 = %d %q, ETag %q", resp.StatusCode, body, etag)
	}
	if resp, _ := send(t, base, exchange{method: "GET", path: "/items/1", header: []string{"If-None-Match", etag}}); resp.StatusCode != 304 {
		t.Errorf("GET with If-None-Match = %d, want 304", resp.StatusCode)
	}
	resp, _ = send(t, base, exchange{method: "PATCH", path: "/items/1", body: `{"count":1}`,
		header: []string{"Content-Type", "application/merge-patch+json", "If-Match", etag}})
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH with a fresh If-Match = %d, want 200", resp.StatusCode)
	}
	next := resp.Header.Get("ETag")
	if next == "" || next == etag {
		t.Errorf("PATCH returned ETag %q; want the new representation's, not %q", next, etag)
	}
	resp, body = send(t, base, exchange{method: "PUT", path: "/items/1", body: `{"name":"widget","count":99}`,
		header: []string{"Content-Type", "application/json", "If-Match", etag}})
	if resp.StatusCode != 412 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("PUT with a stale If-Match = %d %s %q, want 412 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if _, body := send(t, base, exchange{method: "GET", path: "/items/1"}); !strings.Contains(body, `"count":1`) {
		t.Errorf("after the refused PUT the item is %s; the stale write reached the API", body)
	}
	// The API stores JSON re-formatted (keys sorted), so the PUT's content
	// is not the new representation: no ETag on its response.
	resp, _ = send(t, base, exchange{method: "PUT", path: "/items/1", body: `{"name":"widget","count":2}`,
		header: []string{"Content-Type", "application/json", "If-Match", next}})
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != "" {
		t.Errorf("PUT with a fresh If-Match = %d, ETag %q; want 200 without ETag", resp.StatusCode, resp.Header.Get("ETag"))
	}
}

// TestGatewayOverHTTPTest runs the legacy API behind httptest with Caddy and
// the etag handler in front of it, as Caddyfile.example configures them.
func TestGatewayOverHTTPTest(t *testing.T) {
	requireModules(t, "http.handlers.etag")
	api := httptest.NewServer(legacyapi.New())
	defer api.Close()
	base := testutil.Start(t, fmt.Sprintf(`:{port} {
	encode zstd gzip
	etag {
		require_precondition
	}
	reverse_proxy %s
}
`, strings.TrimPrefix(api.URL, "http://")))
	walkthrough(t, base)
	resp, _ := send(t, base, exchange{method: "DELETE", path: "/items/2"})
	if resp.StatusCode != 428 {
		t.Errorf("DELETE without a precondition = %d, want 428", resp.StatusCode)
	}
}

// syncBuffer is a bytes.Buffer safe to write from exec's copying goroutine
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// exampleOn returns Caddyfile.example with the gateway moved to port, the
// legacy API to apiAddr, the admin endpoint and config persistence off, and
// global adds to the global options.
func exampleOn(t *testing.T, port int, apiAddr, global string) string {
	t.Helper()
	example, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	config := string(example)
	for _, r := range [][2]string{
		{"admin localhost:2019", "admin off\n\tpersist_config off" + global},
		{":8080 {", fmt.Sprintf(":%d {", port)},
		{"reverse_proxy 127.0.0.1:9080", "reverse_proxy " + apiAddr},
	} {
		if !strings.Contains(config, r[0]) {
			t.Fatalf("Caddyfile.example no longer contains %q; update this test", r[0])
		}
		config = strings.ReplaceAll(config, r[0], r[1])
	}
	return config
}

// demoDir makes a directory to run the demo from, as the repository root
// would be but without its demo/files: config as Caddyfile.example and a
// copy of the demo page in demo/ui.
func demoDir(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile.example"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "demo", "ui"), os.DirFS("../../demo/ui")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDemoEndToEnd runs the command on a copy of Caddyfile.example whose
// ports are moved to free ones, from a fresh directory without demo/files,
// walks through the README's story, and stops it with Ctrl-C.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo")
	}
	requireModules(t, "http.handlers.etag", "http.handlers.fs_notify")

	gatewayPort, apiAddr := testutil.FreePort(t), fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dir := demoDir(t, exampleOn(t, gatewayPort, apiAddr, ""))

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-api", apiAddr)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ETAGGATE_DEMO_AS_MAIN=1",
		"HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	var output syncBuffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", output.String())
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", gatewayPort), 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("demo exited before listening: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not start listening within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if !strings.Contains(output.String(), "legacy API on http://"+apiAddr) ||
		!strings.Contains(output.String(), fmt.Sprintf("gateway on http://localhost:%d", gatewayPort)) {
		t.Errorf("the start-up line does not say where the API and gateway listen:\n%s", output.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, "demo", "files")); err != nil || !fi.IsDir() {
		t.Errorf("demo/files was not created: %v", err)
	}

	walkthrough(t, base)

	// The demo page is served under /ui/, and /ui leads there.
	resp, body := send(t, base, exchange{method: "GET", path: "/ui/"})
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>etaggate demo</title>") {
		t.Errorf("GET /ui/ = %d %.200q, want the demo page", resp.StatusCode, body)
	}
	if resp, _ := send(t, base, exchange{method: "GET", path: "/ui"}); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui = %d Location %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.Contains(output.String(), fmt.Sprintf("open http://localhost:%d/ui/ in two tabs", gatewayPort)) {
		t.Errorf("the start-up lines do not point at the demo page:\n%s", output.String())
	}

	// A change-notification stream stays open across the Ctrl-C below.
	stream, err := http.Get(base + "/v1/files/%2F/notify?recursive=true")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("notify stream = %d %s", stream.StatusCode, stream.Header.Get("Content-Type"))
	}
	first, err := bufio.NewReader(stream.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(first, ":") {
		t.Fatalf("notify stream starts with %q, %v; want a comment line", first, err)
	}

	// Ctrl-C: Caddy stops gracefully and the process exits 0, promptly,
	// with a keep-alive connection to the API and an event stream open.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Errorf("demo exited with %v after Ctrl-C, want status 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not exit within 20s of Ctrl-C with an event stream open")
	}
}
