//go:build linux

package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/etaggate/etaggate/internal/testutil"
)

func TestFSNotifyCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`fs_notify {
		root            /srv/files
		prefix          /api/files
		keepalive       30s
		batch           100ms
		queue           16
		history         64
		max_subscribers 5
	}`)
	var m FSNotify
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := FSNotify{
		Root:           "/srv/files",
		Prefix:         "/api/files",
		Keepalive:      caddy.Duration(30 * time.Second),
		Batch:          caddy.Duration(100 * time.Millisecond),
		Queue:          16,
		History:        64,
		MaxSubscribers: 5,
	}
	got, _ := json.Marshal(m)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("parsed %s\nwant   %s", got, exp)
	}
}

// TestFSNotifyCaddyfileErrors checks the errors of the Caddyfile syntax:
// they name the file and line, and not the directive (Caddy does).
func TestFSNotifyCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ input, want string }{
		{"fs_notify /srv {\n}", "wrong argument count"},
		{"fs_notify {\nroot /a\nbogus 1\n}", `unknown option "bogus"`},
		{"fs_notify {\nroot\n}", "wrong argument count"},
		{"fs_notify {\nroot /a /b\n}", "root takes one value"},
		{"fs_notify {\nroot /a\nkeepalive soon\n}", `keepalive "soon"`},
		{"fs_notify {\nroot /a\nhistory many\n}", `history "many": not a whole number`},
		{"fs_notify {\nroot /a\nqueue 1.5\n}", `queue "1.5": not a whole number`},
	} {
		var m FSNotify
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Testfile:") ||
			strings.Contains(err.Error(), "fs_notify:") {
			t.Errorf("%q: error %v, want one with the file and line mentioning %q", c.input, err, c.want)
		}
	}
}

// TestFSNotifyConfigErrors checks that a configuration that cannot work is
// refused by Validate, with the same message whether it came from a
// Caddyfile or JSON, and that 0 means the default in both.
func TestFSNotifyConfigErrors(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	provision := func(m *FSNotify) error {
		err := m.Provision(ctx)
		if err == nil {
			err = m.Validate()
			_ = m.Cleanup()
		}
		return err
	}
	for _, c := range []struct{ options, want string }{
		{"", "root is required"},
		{"root " + root + "\nprefix v1/files", `prefix "v1/files" must begin with /`},
		{"root " + root + "\nkeepalive -1s", "keepalive -1s must be positive"},
		{"root " + root + "\nbatch -5ms", "batch -5ms must be positive"},
		{"root " + root + "\nqueue -1", "queue -1 must be at least 1"},
		{"root " + root + "\nhistory -2", "history -2 must be at least 1"},
		{"root " + root + "\nmax_subscribers -3", "max_subscribers -3 must be at least 1"},
		{"root " + filepath.Join(root, "missing"), "missing"},
	} {
		var fromFile FSNotify
		testutil.Must(t, fromFile.UnmarshalCaddyfile(caddyfile.NewTestDispenser("fs_notify {\n"+c.options+"\n}")))
		asJSON, err := json.Marshal(fromFile)
		testutil.Must(t, err)
		var fromJSON FSNotify
		testutil.Must(t, json.Unmarshal(asJSON, &fromJSON))
		for _, m := range []*FSNotify{&fromFile, &fromJSON} {
			err := provision(m)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "fs_notify") {
				t.Errorf("%q: error %v, want one naming %q (and not the directive: Caddy adds it)", c.options, err, c.want)
			}
		}
	}

	var m FSNotify
	testutil.Must(t, m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("fs_notify {\nroot "+root+"\nbatch 0s\nqueue 0\n}")))
	testutil.Must(t, provision(&m))
	if time.Duration(m.Batch) != 50*time.Millisecond || m.Queue != 1024 {
		t.Errorf("batch 0s, queue 0: %s, %d, want the defaults", time.Duration(m.Batch), m.Queue)
	}

	// Through Caddy, the message names the module once.
	err := caddy.Load(testutil.Adapt(t, "{\n\tadmin off\n}\n:0 {\n\tbind 127.0.0.1\n\tfs_notify {\n\t\tprefix /x\n\t}\n}\n"), true)
	if err == nil || !strings.Contains(err.Error(), "provision http.handlers.fs_notify: root is required") {
		_ = caddy.Stop()
		t.Errorf("loading a configuration without root: %v", err)
	}
}

// TestCaddyfileExampleFSNotify adapts the repository's Caddyfile.example
// and checks the fs_notify handler it configures.
func TestCaddyfileExampleFSNotify(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Skip("no Caddyfile.example:", err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"handler":"fs_notify"`) || !strings.Contains(string(cfg), `"root":"demo/files"`) {
		t.Errorf("Caddyfile.example does not configure fs_notify over demo/files:\n%s", cfg)
	}
	// The demo directory it watches exists and can be watched.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	m := FSNotify{Root: "../demo/files"}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
