package caddymodule

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/etaggate/etaggate/internal/testutil"
)

func TestETagChangesCaddyfile(t *testing.T) {
	cases := []struct {
		input string
		want  *Changes
	}{
		{"etag {\n\tchanges /changes\n}", &Changes{Path: "/changes"}},
		{"etag {\n\tchanges /changes {\n\t}\n}", &Changes{Path: "/changes"}},
		{"etag {\n\tchanges /api/changes {\n\t\tkeepalive 30s\n\t\tbatch 10ms\n\t\tqueue 64\n\t\thistory 100\n\t\tmax_subscribers 5\n\t}\n\tverify cache\n}",
			&Changes{Path: "/api/changes", Keepalive: caddy.Duration(30 * time.Second), Batch: caddy.Duration(10 * time.Millisecond), Queue: 64, History: 100, MaxSubscribers: 5}},
	}
	for _, c := range cases {
		e, err := parseETag(t, c.input)
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		if !reflect.DeepEqual(e.Changes, c.want) {
			t.Errorf("%q: parsed %+v, want %+v", c.input, e.Changes, c.want)
		}
	}
	e, _ := parseETag(t, cases[2].input)
	if e.Verify != "cache" {
		t.Errorf("the option after the changes block was lost: %+v", e)
	}

	// Provision fills the defaults in, and the feed runs until Cleanup.
	e, _ = parseETag(t, cases[0].input)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	testutil.Must(t, e.Provision(ctx))
	want := &Changes{Path: "/changes", Keepalive: caddy.Duration(15 * time.Second), Batch: caddy.Duration(50 * time.Millisecond), Queue: 1024, History: 4096, MaxSubscribers: 10000}
	if !reflect.DeepEqual(e.Changes, want) {
		t.Errorf("after Provision %+v, want the defaults %+v", e.Changes, want)
	}
	testutil.Must(t, e.Validate())
	testutil.Must(t, e.Cleanup())

	b, err := json.Marshal(&ETag{Changes: want})
	testutil.Must(t, err)
	if got := `{"changes":{"path":"/changes","keepalive":15000000000,"batch":50000000,"queue":1024,"history":4096,"max_subscribers":10000}}`; string(b) != got {
		t.Errorf("JSON %s, want %s", b, got)
	}
}

func TestETagChangesBadValues(t *testing.T) {
	cases := []struct{ block, want string }{
		{"changes", "path"},
		{"changes /a /b", "one path"},
		{"changes changes", "must begin with /"},
		{"changes /c {\n\t\tcolour blue\n\t}", `unknown option "colour"`},
		{"changes /c {\n\t\tqueue\n\t}", "queue takes one value"},
		{"changes /c {\n\t\tqueue many\n\t}", "not a whole number"},
		{"changes /c {\n\t\tqueue -1\n\t}", "queue -1 must be at least 1"},
		{"changes /c {\n\t\thistory -2\n\t}", "history -2"},
		{"changes /c {\n\t\tmax_subscribers -3\n\t}", "max_subscribers -3"},
		{"changes /c {\n\t\tbatch soon\n\t}", "batch"},
		{"changes /c {\n\t\tkeepalive -1s\n\t}", "keepalive -1s must be positive"},
	}
	for _, c := range cases {
		input := "etag {\n\t" + c.block + "\n}"
		e, err := parseETag(t, input)
		if err == nil {
			err = e.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.block, err, c.want)
		}
	}
	var e ETag
	testutil.Must(t, json.Unmarshal([]byte(`{"changes":{"path":"changes"}}`), &e))
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := e.Provision(ctx); err == nil || !strings.Contains(err.Error(), "must begin with /") {
		t.Errorf("JSON path without /: Provision %v", err)
	}
	_ = e.Cleanup()
}
