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

func TestFSNotifyCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ input, want string }{
		{"fs_notify {\n}", "root is required"},
		{"fs_notify /srv {\n}", "wrong argument count"},
		{"fs_notify {\nroot /a\nbogus 1\n}", `unknown option "bogus"`},
		{"fs_notify {\nroot\n}", "wrong argument count"},
		{"fs_notify {\nroot /a /b\n}", "root takes one value"},
		{"fs_notify {\nroot /a\nkeepalive soon\n}", `keepalive "soon"`},
		{"fs_notify {\nroot /a\nbatch 0s\n}", `batch "0s" must be positive`},
		{"fs_notify {\nroot /a\nqueue 0\n}", `queue "0"`},
		{"fs_notify {\nroot /a\nhistory many\n}", `history "many"`},
		{"fs_notify {\nroot /a\nmax_subscribers -1\n}", `max_subscribers "-1"`},
		{"fs_notify {\nroot /a\nprefix v1/files\n}", `prefix "v1/files" must begin with /`},
	} {
		var m FSNotify
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: error %v, want one with the file and line mentioning %q", c.input, err, c.want)
		}
	}
}

// TestFSNotifyJSON provisions the module from Caddy JSON, defaults and
// validation included.
func TestFSNotifyJSON(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()

	var m FSNotify
	if err := json.Unmarshal([]byte(`{"root":`+jsonString(root)+`}`), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.Prefix != "/v1/files" || time.Duration(m.Keepalive) != 15*time.Second || time.Duration(m.Batch) != 50*time.Millisecond ||
		m.Queue != 1024 || m.History != 4096 || m.MaxSubscribers != 10000 {
		t.Errorf("defaults not applied: %+v", m)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ json, want string }{
		{`{}`, "root is required"},
		{`{"root":` + jsonString(filepath.Join(root, "missing")) + `}`, "missing"},
		{`{"root":` + jsonString(root) + `,"queue":-1}`, "queue -1"},
		{`{"root":` + jsonString(root) + `,"history":-2}`, "history -2"},
		{`{"root":` + jsonString(root) + `,"max_subscribers":-3}`, "max_subscribers -3"},
		{`{"root":` + jsonString(root) + `,"keepalive":-1000000000}`, "keepalive -1s"},
		{`{"root":` + jsonString(root) + `,"prefix":"files"}`, `prefix "files"`},
	} {
		var m FSNotify
		if err := json.Unmarshal([]byte(c.json), &m); err != nil {
			t.Fatal(err)
		}
		err := m.Provision(ctx)
		if err == nil {
			err = m.Validate()
			_ = m.Cleanup()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "fs_notify: ") {
			t.Errorf("%s: error %v, want one naming %q", c.json, err, c.want)
		}
	}

	f := filepath.Join(root, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m = FSNotify{Root: f}
	if err := m.Provision(ctx); err == nil || !strings.Contains(err.Error(), "not a directory") {
		_ = m.Cleanup()
		t.Errorf("root that is a file: %v", err)
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
