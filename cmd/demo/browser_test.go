package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/etaggate/etaggate/internal/testutil"
)

var screenshots = flag.String("screenshots", "", "directory for the browser test's screenshots of every step (default: only on failure, to a new directory under $TMPDIR)")

// chromium starts headless Chromium with a fresh profile and returns a
// context for the browser; tabs are made from it with tab.
func chromium(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the browser test needs Chromium (Debian package chromium; scripts/test installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // Chromium refuses to run as root with its sandbox
		chromedp.DisableGPU,
		chromedp.WindowSize(1360, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return browser
}

// page is a tab in a browser context of its own (its own cookies and
// cache), as a second user or a private window would have.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu     sync.Mutex
	errors []string // exceptions thrown by the page's scripts
}

func tab(t *testing.T, browser context.Context, name string) *page {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.errors = append(p.errors, (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
		}
	})
	if err != nil {
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	return p
}

// checkScripts fails the test if the page's scripts threw: an exception
// there is a bug in the page.
func (p *page) checkScripts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errors {
		p.t.Errorf("%s: script error: %s", p.name, e)
	}
}

// do runs actions in the tab, failing the test with step in the message.
func (p *page) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, step, err)
	}
}

// value runs an action that returns a value.
func value[T any](p *page, step string, action chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, step, err)
	}
	return v
}

// wait polls a JavaScript expression until it is true.
func (p *page) wait(step, expr string) {
	p.t.Helper()
	value(p, step, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second)))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return value(p, "reading "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// typeInto replaces the value of an input by typing, as a user would.
func (p *page) typeInto(sel, value string) {
	p.t.Helper()
	p.do("typing into "+sel,
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).select()`, sel)),
		chromedp.SendKeys(chromedp.CSS(sel), value))
}

func (p *page) click(sel string) {
	p.t.Helper()
	p.do("clicking "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// shoot saves a screenshot of the tab as <dir>/<name>-<step>.png.
func (p *page) shoot(dir, step string) {
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("%s: screenshot: %v", p.name, err)
		return
	}
	file := filepath.Join(dir, p.name+"-"+step+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Logf("%s: screenshot: %v", p.name, err)
	}
}

// apiItem reads an item from the legacy API itself, behind the gateway.
func apiItem(t *testing.T, apiAddr, id string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + apiAddr + "/items/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil {
		t.Fatalf("GET /items/%s from the API = %d %q", id, resp.StatusCode, body)
	}
	return v
}

const (
	item1 = `article[data-path="/items/1"]`
	item2 = `article[data-path="/items/2"]`
)

// TestBrowser drives the demo page in headless Chromium against the demo
// gateway, run in this process from Caddyfile.example in a copy of the demo
// directory: two users edit one item and the second gets the conflict view
// while the API keeps the first edit; a blind write gets the 428
// explanation; a file created in demo/files shows in the events panel; and
// after the gateway restarts, the event stream reconnects and the page
// says that changes were missed.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	requireModules(t, "http.handlers.etag", "http.handlers.fs_notify")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	browser := chromium(t, ctx)

	port, apiAddr := testutil.FreePort(t), fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dir := demoDir(t, exampleOn(t, port, apiAddr, "\n\tlog {\n\t\tlevel ERROR\n\t}"))
	t.Chdir(dir)
	var stderr bytes.Buffer
	d, err := prepare([]string{"-api", apiAddr}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.api.Close()
	start := func() {
		t.Helper()
		if err := caddy.Load(d.adapted, true); err != nil {
			t.Fatalf("loading the demo configuration: %v", err)
		}
		testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	}
	start()
	defer func() { _ = caddy.Stop() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/ui/", port)

	a, b := tab(t, browser, "alice"), tab(t, browser, "bob")
	defer a.checkScripts()
	defer b.checkScripts()
	shots := *screenshots
	defer func() {
		if t.Failed() && shots == "" {
			var err error
			if shots, err = os.MkdirTemp("", "etaggate-browser-"); err != nil {
				t.Log(err)
				return
			}
			a.shoot(shots, "failed")
			b.shoot(shots, "failed")
			t.Logf("screenshots in %s", shots)
		}
	}()
	shoot := func(p *page, step string) {
		if shots != "" {
			p.shoot(shots, step)
		}
	}

	loaded := fmt.Sprintf(`document.querySelector('%s .etag')?.textContent.startsWith('"')`, item1)
	for _, p := range []*page{a, b} {
		p.do("opening the page", chromedp.Navigate(url))
		p.wait("waiting for /items/1 and its ETag", loaded)
	}
	first := a.text(item1 + " .etag")
	if got := b.text(item1 + " .etag"); got != first {
		t.Fatalf("the two users read different ETags: %s and %s", first, got)
	}

	// Bob starts editing, then Alice saves first.
	b.typeInto(item1+` input[data-member="count"]`, "7")
	a.typeInto(item1+` input[data-member="name"]`, "edited by alice")
	a.click(item1 + " button.save")
	a.wait("waiting for alice's save", fmt.Sprintf(`document.querySelector('%s .flash')?.textContent === 'Saved.'`, item1))
	if got := a.text(item1 + " .etag"); got == first {
		t.Errorf("after saving, alice's form still holds ETag %s", got)
	}
	if v := apiItem(t, apiAddr, "1"); v["name"] != "edited by alice" {
		t.Fatalf("after alice's save the API holds %v", v)
	}

	// The change feed tells Bob's tab at once; his edits are kept, and the
	// page says his save will show both versions.
	b.wait("waiting for the change feed to mark bob's edited card as stale", fmt.Sprintf(`document.querySelector('%s .stale')?.hidden === false`, item1))

	// Bob's save is based on the version before Alice's: conflict view.
	b.click(item1 + " button.save")
	b.do("waiting for the conflict view", chromedp.WaitVisible(chromedp.CSS(item1+" .conflict")))
	shoot(b, "conflict")
	conflict := b.text(item1 + " .conflict")
	for _, want := range []string{"Someone else changed this item", "412 Precondition Failed", "If-Match: " + first,
		"edited by alice", "7", "Reload", "Apply my change on top"} {
		if !strings.Contains(conflict, want) {
			t.Errorf("the conflict view does not show %q:\n%s", want, conflict)
		}
	}
	if cur, yours := b.text(item1+` tr.theirs .current-value`), b.text(item1+` tr.mine .your-value`); cur != "edited by alice" || yours != "7" {
		t.Errorf("conflict rows: their change %q, your change %q; want %q and %q", cur, yours, "edited by alice", "7")
	}
	if v := apiItem(t, apiAddr, "1"); v["name"] != "edited by alice" || v["count"] != 0.0 {
		t.Fatalf("after bob's refused save the API holds %v; want alice's edit alone", v)
	}
	refused := value(b, "counting 412s in the request log", chromedp.Evaluate[int](`document.querySelectorAll('.request-log .req.s412').length`))
	if refused != 1 {
		t.Errorf("bob's request log shows %d 412 responses, want 1", refused)
	}

	// Applying Bob's change on top keeps Alice's.
	b.click(item1 + " button.apply")
	b.wait("waiting for the change on top", fmt.Sprintf(`document.querySelector('%s .flash.ok') !== null && document.querySelector('%s .conflict') === null`, item1, item1))
	if v := apiItem(t, apiAddr, "1"); v["name"] != "edited by alice" || v["count"] != 7.0 {
		t.Errorf("after bob applied his change on top the API holds %v; want alice's name and bob's count", v)
	}

	// A blind write: 428 and its explanation; nothing is written.
	a.click("#send-if-match")
	a.typeInto(item1+` input[data-member="name"]`, "blind write")
	a.click(item1 + " button.save")
	a.do("waiting for the 428 explanation", chromedp.WaitVisible(chromedp.CSS(item1+" .explain")))
	if got := a.text(item1 + " .explain"); !strings.Contains(got, "428 Precondition Required") || !strings.Contains(got, "require_precondition") {
		t.Errorf("the 428 explanation says %q", got)
	}
	if v := apiItem(t, apiAddr, "1"); v["name"] != "edited by alice" {
		t.Errorf("after the blind write the API holds %v", v)
	}
	a.click("#send-if-match")

	// The change feed is live, and an item Bob is not editing is refreshed
	// in his tab when Alice saves it in hers.
	a.wait("waiting for the change feed's status", `document.getElementById('feed-status').dataset.state === 'open'`)
	b.wait("waiting for the change feed's status in bob's tab", `document.getElementById('feed-status').dataset.state === 'open'`)
	a.typeInto(item2+` input[data-member="name"]`, "renamed by alice")
	a.click(item2 + " button.save")
	a.wait("waiting for alice's save of /items/2", fmt.Sprintf(`document.querySelector('%s .flash')?.textContent === 'Saved.'`, item2))
	b.wait("waiting for bob's tab to show alice's /items/2 without a reload", fmt.Sprintf(`document.querySelector('%s input[data-member="name"]')?.value === 'renamed by alice'`, item2))

	// A file created in demo/files shows in the events panel.
	a.wait("waiting for the notification stream", `document.querySelector('#files .stream-status').dataset.state === 'open'`)
	if err := os.WriteFile(filepath.Join(dir, "demo", "files", "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.wait("waiting for hello.txt in the events panel",
		`[...document.querySelectorAll('#files .events .ev')].some((e) => e.querySelector('.path').textContent === 'hello.txt' && e.querySelector('.type').textContent === 'child_file_added')`)
	shoot(a, "events")
	if a.notice() {
		t.Errorf("the page says changes were missed before the gateway restarted")
	}

	// The gateway restarts: EventSource reconnects with Last-Event-ID, the
	// new configuration has no history of it, so the page is told it
	// missed changes, and rescans.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	start()
	a.wait("waiting for the overflow notice", `(() => {
		const n = document.querySelector('#files .notice');
		return !n.hidden && n.textContent.includes('changes were missed — rescanning') && n.textContent.includes('Listed');
	})()`)
	a.wait("waiting for the stream to be open again", `document.querySelector('#files .stream-status').dataset.state === 'open'`)
	shoot(a, "overflow")
	if got := a.text("#files .listing"); !strings.Contains(got, "hello.txt") {
		t.Errorf("the rescanned listing is %q, want hello.txt in it", got)
	}
}

// notice reports whether the files panel shows the missed-changes notice.
func (p *page) notice() bool {
	p.t.Helper()
	return value(p, "reading the notice", chromedp.Evaluate[bool](`!document.querySelector('#files .notice').hidden`))
}
