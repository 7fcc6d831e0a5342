//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestFSNotifyHelp: `caddy help fs-notify` describes the command and its
// flags, as Caddy's own commands do.
func TestFSNotifyHelp(t *testing.T) {
	p := spawn(t, "help", "fs-notify")
	var out []string
	for l, ok := p.line(); ok; l, ok = p.line() {
		out = append(out, l)
	}
	if code := p.exit(); code != 0 {
		t.Fatalf("caddy help fs-notify exited %d", code)
	}
	text := strings.Join(out, "\n")
	for _, want := range []string{"caddy fs-notify --url <gateway> (--path <dir> | --id <file ID>)", "--recursive", "--filter strings", `--prefix string           URL prefix of fs_notify (default "/v1/files")`, "--json", "--changes", "--filter-prefix strings", "SIGQUIT"} {
		if !strings.Contains(text, want) {
			t.Errorf("help lacks %q:\n%s", want, text)
		}
	}
}

// TestFSNotifyCLIEvents follows a directory tree recursively through a
// real gateway: each change is one "<type>\t<path>" line, in order.
func TestFSNotifyCLIEvents(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, root, testutil.FreePort(t))
	p := follow(t, "--url", g.url(), "--path", "/", "--recursive")
	mkdir(t, filepath.Join(root, "reports"))
	p.expect("child_dir_added\treports")
	touch(t, filepath.Join(root, "reports", "q3.txt"))
	p.expect("child_file_added\treports/q3.txt")
	testutil.Must(t, os.Rename(filepath.Join(root, "reports", "q3.txt"), filepath.Join(root, "q3 final.txt")))
	p.expect("child_file_moved_from\treports/q3.txt")
	p.expect("child_file_moved_to\tq3 final.txt")
	testutil.Must(t, os.Remove(filepath.Join(root, "q3 final.txt")))
	p.expect("child_file_removed\tq3 final.txt")
}

// TestFSNotifyCLIJSON prints each notification object on its own line.
func TestFSNotifyCLIJSON(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, root, testutil.FreePort(t))
	p := follow(t, "--url", g.url(), "--path", "/", "--json")
	touch(t, filepath.Join(root, "j.txt"))
	l, _ := p.line()
	var n struct {
		Type       string   `json:"type"`
		Path       string   `json:"path"`
		Spine      []string `json:"spine"`
		StreamName *string  `json:"stream_name"`
	}
	if err := json.Unmarshal([]byte(l), &n); err != nil || n.Type != "child_file_added" || n.Path != "j.txt" || len(n.Spine) != 2 || n.StreamName != nil {
		t.Fatalf("line %q: %+v, %v", l, n, err)
	}
	var st syscall.Stat_t
	testutil.Must(t, syscall.Stat(filepath.Join(root, "j.txt"), &st))
	if n.Spine[1] != strconv.FormatUint(st.Ino, 10) {
		t.Errorf("spine %q does not end with the file's ID %d", n.Spine, st.Ino)
	}
}

// TestFSNotifyCLIFilter asks the gateway for one type only.
func TestFSNotifyCLIFilter(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, root, testutil.FreePort(t))
	p := follow(t, "--url", g.url(), "--path", "/", "--filter", "child_dir_added,child_dir_removed")
	touch(t, filepath.Join(root, "f.txt"))
	mkdir(t, filepath.Join(root, "d1"))
	testutil.Must(t, os.Remove(filepath.Join(root, "d1")))
	for _, want := range []string{"child_dir_added\td1", "child_dir_removed\td1"} {
		if l, _ := p.line(); l != want {
			t.Fatalf("line %q, want %q (f.txt's events are filtered out)", l, want)
		}
	}
}

// TestFSNotifyCLIID names the directory by its file ID.
func TestFSNotifyCLIID(t *testing.T) {
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "sub"))
	var st syscall.Stat_t
	testutil.Must(t, syscall.Stat(filepath.Join(root, "sub"), &st))
	g := startGateway(t, root, testutil.FreePort(t))
	p := follow(t, "--url", g.url(), "--id", strconv.FormatUint(st.Ino, 10))
	touch(t, filepath.Join(root, "outside.txt"))
	touch(t, filepath.Join(root, "sub", "y"))
	if l, _ := p.line(); l != "child_file_added\ty" {
		t.Fatalf("line %q, want the file added in sub only, relative to it", l)
	}
}

// TestFSNotifyCLIBadPath exits 1 with the gateway's reason.
func TestFSNotifyCLIBadPath(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, root, testutil.FreePort(t))
	p := spawn(t, "fs-notify", "--url", g.url(), "--path", "/nope")
	// Caddy logs a command's error on stderr; the line carries the detail
	// of the gateway's problem document.
	l := p.notice("404 Not Found")
	if !strings.Contains(l, `no directory \"%2Fnope\" below root`) {
		t.Errorf("stderr %q lacks the problem's detail", l)
	}
	if code := p.exit(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if l, ok := p.line(); ok {
		t.Errorf("stdout %q, want nothing", l)
	}

	p = spawn(t, "fs-notify", "--url", g.url())
	p.notice("name the directory to watch with --path")
	if code := p.exit(); code != 1 {
		t.Errorf("without --path or --id: exit status %d, want 1", code)
	}
}

// TestFSNotifyCLISignals ends with status 0 on SIGINT, SIGTERM and SIGQUIT.
func TestFSNotifyCLISignals(t *testing.T) {
	root := t.TempDir()
	g := startGateway(t, root, testutil.FreePort(t))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT} {
		p := follow(t, "--url", g.url(), "--path", "/")
		testutil.Must(t, p.cmd.Process.Signal(sig))
		if code := p.exit(); code != 0 {
			t.Errorf("%v: exit status %d, want 0", sig, code)
		}
	}
}

// TestFSNotifyCLIGatewayRestart survives a restart of the gateway: it
// reconnects with Last-Event-ID, is told the new gateway cannot replay
// what it missed, and prints what happens next.
func TestFSNotifyCLIGatewayRestart(t *testing.T) {
	root := t.TempDir()
	port := testutil.FreePort(t)
	g := startGateway(t, root, port)
	p := follow(t, "--url", g.url(), "--path", "/")
	touch(t, filepath.Join(root, "before.txt"))
	p.expect("child_file_added\tbefore.txt")
	g.stop()
	p.notice("the stream ended; reconnecting in 250ms with Last-Event-ID ")
	p.notice("connection refused; reconnecting in") // the gateway is down
	startGateway(t, root, port)
	p.notice("reconnected to " + g.url())
	p.notice("overflow (reason history)")
	touch(t, filepath.Join(root, "after.txt"))
	p.expect("child_file_added\tafter.txt")
}
