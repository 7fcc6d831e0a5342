package caddymodule

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/etaggate/etaggate/internal/testutil"
)

// adaptApp adapts a Caddyfile whose global options are globals and
// returns the etaggate app's JSON.
func adaptApp(t *testing.T, globals string) map[string]any {
	t.Helper()
	globals = "\t" + strings.ReplaceAll(strings.TrimSpace(globals), "\n", "\n\t")
	cfg := testutil.Adapt(t, "{\n"+globals+"\n}\n\n:8080 {\n\trespond ok\n}\n")
	var doc struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	testutil.Must(t, json.Unmarshal(cfg, &doc))
	var app map[string]any
	if raw := doc.Apps["etaggate"]; raw != nil {
		testutil.Must(t, json.Unmarshal(raw, &app))
	}
	return app
}

func TestClusterCaddyfile(t *testing.T) {
	for _, c := range []struct {
		name, globals, want string
	}{
		{"every option", "etaggate {\n\tredis redis://10.0.0.5:6379/0 {\n\t\tpassword {env.REDIS_PASSWORD}\n\t\tprefix shop:\n\t\tlease 20s\n\t}\n}", `{"redis":{"address":"redis://10.0.0.5:6379/0","lease":20000000000,"password":"{env.REDIS_PASSWORD}","prefix":"shop:"}}`},
		{"address only", "etaggate {\n\tredis 127.0.0.1:6379\n}", `{"redis":{"address":"127.0.0.1:6379"}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := json.Marshal(adaptApp(t, c.globals))
			testutil.Must(t, err)
			if string(got) != c.want {
				t.Fatalf("adapted to\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

func TestClusterCaddyfileErrors(t *testing.T) {
	for _, c := range []struct {
		name, globals, want string
	}{
		{"no address", "etaggate {\n\tredis\n}", "redis needs an address"},
		{"two addresses", "etaggate {\n\tredis a:1 b:2\n}", "redis takes one address"},
		{"twice", "etaggate {\n\tredis a:1\n\tredis b:2\n}", "redis is given twice"},
		{"unknown option", "etaggate {\n\tmemcached a:1\n}", `unknown option "memcached" (valid: redis)`},
		{"unknown redis option", "etaggate {\n\tredis a:1 {\n\t\tdb 3\n\t}\n}", `unknown redis option "db" (valid: password, prefix, lease)`},
		{"lease not a duration", "etaggate {\n\tredis a:1 {\n\t\tlease soon\n\t}\n}", `lease "soon"`},
		{"prefix two values", "etaggate {\n\tredis a:1 {\n\t\tprefix a b\n\t}\n}", "prefix takes one value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			full := "{\n" + c.globals + "\n}\n:8080 {\n\trespond ok\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(full), map[string]any{"filename": "Caddyfile"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestClusterValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		app  Cluster
		want string
	}{
		{"lease too short", Cluster{Redis: &RedisConfig{Address: "a:1", Lease: caddy.Duration(100 * time.Millisecond)}}, "shorter than"},
		{"lease negative", Cluster{Redis: &RedisConfig{Address: "a:1", Lease: -1}}, "negative"},
		{"brace in prefix", Cluster{Redis: &RedisConfig{Address: "a:1", Prefix: "a{b}:"}}, "brace"},
		{"no address", Cluster{Redis: &RedisConfig{}}, "no address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.app.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, c.want)
			}
		})
	}
	if err := (&Cluster{}).Validate(); err != nil {
		t.Fatalf("an empty etaggate block: %v", err)
	}
}

// runningCluster returns the running configuration's etaggate app.
func runningCluster(t *testing.T) *Cluster {
	t.Helper()
	app, err := caddy.ActiveContext().AppIfConfigured("etaggate")
	testutil.Must(t, err)
	return app.(*Cluster)
}

// TestClusterClientSurvivesReload: a reload with the same redis
// configuration keeps the process's client (and its connections, waits
// and leases); a changed one gets a new client and closes the old.
func TestClusterClientSurvivesReload(t *testing.T) {
	srv := testutil.StartRedis(t)
	site := ":" + strconv.Itoa(testutil.FreePort(t)) + " {\n\trespond ok\n}\n"
	globals := "etaggate {\n\tredis " + srv.Addr + " {\n\t\tlease 2s\n\t}\n}"
	testutil.LoadWith(t, globals, site)
	defer func() { _ = caddy.Stop() }()
	first := runningCluster(t).Client()
	if first == nil {
		t.Fatal("no Redis client after loading the etaggate option")
	}
	testutil.Must(t, first.Ping(context.Background()))

	testutil.LoadWith(t, globals, site+"# reloaded\n")
	if got := runningCluster(t).Client(); got != first {
		t.Fatal("a reload with the same redis configuration made a new client")
	}
	testutil.Must(t, first.Ping(context.Background()))

	testutil.LoadWith(t, strings.Replace(globals, "lease 2s", "lease 3s", 1), site)
	second := runningCluster(t).Client()
	if second == first {
		t.Fatal("a changed lease kept the old client")
	}
	testutil.Must(t, second.Ping(context.Background()))
	if err := first.Ping(context.Background()); err == nil {
		t.Fatal("the client of the replaced configuration was not closed")
	}
}
