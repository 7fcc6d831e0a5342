package caddymodule

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
	"github.com/etaggate/etaggate/proxy"
)

// everyOption sets every etag option to a value other than its default.
const everyOption = `etag {
	hash sha256
	methods PUT POST
	require_precondition
	verify cache
	revalidate cache
	max_body 2MiB
	cache_size 32MiB
	ttl 90s
	key {http.request.host}{http.request.uri.path}
	vary Authorization X-Tenant
	upstream_etag replace
	etag_after_write off
}`

func parseETag(t *testing.T, input string) (*ETag, error) {
	t.Helper()
	e := new(ETag)
	err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return e, err
}

func TestETagCaddyfileEveryOption(t *testing.T) {
	e, err := parseETag(t, everyOption)
	if err != nil {
		t.Fatal(err)
	}
	off := false
	want := &ETag{
		Hash:                "sha256",
		Methods:             []string{"PUT", "POST"},
		RequirePrecondition: true,
		Verify:              "cache",
		Revalidate:          "cache",
		MaxBody:             2 << 20,
		CacheSize:           32 << 20,
		TTL:                 caddy.Duration(90 * time.Second),
		Key:                 "{http.request.host}{http.request.uri.path}",
		Vary:                &[]string{"Authorization", "X-Tenant"},
		UpstreamETag:        "replace",
		ETagAfterWrite:      &off,
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", e, want)
	}

	// Every option reaches the engine's configuration.
	cfg, err := e.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hash != hashing.SHA256 || !slices.Equal(cfg.Methods, []string{"PUT", "POST"}) || !cfg.RequirePrecondition ||
		cfg.Verify != proxy.VerifyCache || cfg.Revalidate != proxy.RevalidateCache || cfg.MaxBody != 2<<20 || cfg.CacheSize != 32<<20 || cfg.TTL != 90*time.Second ||
		!slices.Equal(cfg.Vary, []string{"Authorization", "X-Tenant"}) || cfg.KeepUpstreamETag || cfg.ETagAfterWrite || cfg.Key == nil {
		t.Fatalf("engine configuration %+v does not reflect the options", cfg)
	}

	// And it provisions.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestETagCaddyfileDefaultsAndVariants(t *testing.T) {
	on := true
	cases := []struct {
		input string
		want  *ETag
	}{
		{"etag", &ETag{}},
		{"etag {\n}", &ETag{}},
		{"etag {\n\thash xxh3\n}", &ETag{Hash: "xxh3"}},
		{"etag {\n\thash blake3\n}", &ETag{Hash: "blake3"}},
		{"etag {\n\tverify upstream\n}", &ETag{Verify: "upstream"}},
		{"etag {\n\trevalidate upstream\n}", &ETag{Revalidate: "upstream"}},
		{"etag {\n\tupstream_etag keep\n}", &ETag{UpstreamETag: "keep"}},
		{"etag {\n\tetag_after_write on\n}", &ETag{ETagAfterWrite: &on}},
		{"etag {\n\tvary\n}", &ETag{Vary: &[]string{}}},
		{"etag {\n\tmethods delete\n}", &ETag{Methods: []string{"delete"}}},
		{"etag {\n\tmax_body 512KB\n\tcache_size 1GiB\n\tttl 1h30m\n}", &ETag{MaxBody: 512000, CacheSize: 1 << 30, TTL: caddy.Duration(90 * time.Minute)}},
	}
	for _, c := range cases {
		e, err := parseETag(t, c.input)
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		if !reflect.DeepEqual(e, c.want) {
			t.Errorf("%q: parsed %+v, want %+v", c.input, e, c.want)
		}
	}

	// No option at all gives the documented defaults.
	cfg, err := (&ETag{}).config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hash != hashing.XXH3 || !slices.Equal(cfg.Methods, []string{"PUT", "PATCH", "DELETE"}) || cfg.RequirePrecondition ||
		cfg.Verify != proxy.VerifyUpstream || cfg.Revalidate != proxy.RevalidateUpstream || cfg.MaxBody != 16<<20 || cfg.CacheSize != 64<<20 || cfg.TTL != 10*time.Minute ||
		!slices.Equal(cfg.Vary, []string{"Authorization", "Cookie"}) || !cfg.KeepUpstreamETag || !cfg.ETagAfterWrite || cfg.Key != nil {
		t.Fatalf("defaults %+v differ from the documented ones", cfg)
	}
	// An empty vary list keys by the resource alone.
	cfg, err = (&ETag{Vary: &[]string{}}).config()
	if err != nil || len(cfg.Vary) != 0 {
		t.Fatalf("vary with no headers: %v %v", cfg.Vary, err)
	}
}

func TestETagCaddyfileBadValues(t *testing.T) {
	cases := []struct {
		line   string // inside the etag block
		option string // what the error must name
	}{
		{"hash md5", "hash"},
		{"hash", "hash"},
		{"hash xxh3 sha256", "hash"},
		{"methods", "methods"},
		{"methods GET", "methods"},
		{"methods PUT HEAD", "methods"},
		{"require_precondition yes", "require_precondition"},
		{"verify sometimes", "verify"},
		{"verify", "verify"},
		{"verify cache upstream", "verify"},
		{"revalidate always", "revalidate"},
		{"revalidate", "revalidate"},
		{"revalidate cache upstream", "revalidate"},
		{"max_body lots", "max_body"},
		{"max_body 0", "max_body"},
		{"max_body -1MiB", "max_body"},
		{"max_body", "max_body"},
		{"max_body 1MiB 2MiB", "max_body"},
		{"cache_size big", "cache_size"},
		{"cache_size 0", "cache_size"},
		{"cache_size", "cache_size"},
		{"cache_size 1MiB 2MiB", "cache_size"},
		{"ttl forever", "ttl"},
		{"ttl -5s", "ttl"},
		{"ttl 0s", "ttl"},
		{"ttl", "ttl"},
		{"ttl 1m 2m", "ttl"},
		{"key", "key"},
		{"key {http.request.host} {http.request.uri}", "key"},
		{"upstream_etag maybe", "upstream_etag"},
		{"upstream_etag", "upstream_etag"},
		{"upstream_etag keep replace", "upstream_etag"},
		{"etag_after_write yes", "etag_after_write"},
		{"etag_after_write", "etag_after_write"},
		{"etag_after_write on off", "etag_after_write"},
		{"colour blue", "colour"},
	}
	for _, c := range cases {
		input := "etag {\n\t" + c.line + "\n}"
		e, err := parseETag(t, input)
		if err == nil {
			// Some values are only refused when the handler is validated.
			err = e.Validate()
		}
		if err == nil {
			t.Errorf("%q: accepted", c.line)
			continue
		}
		if !strings.Contains(err.Error(), c.option) {
			t.Errorf("%q: error %q does not name %s", c.line, err, c.option)
		}
	}
	if _, err := parseETag(t, "etag extra"); err == nil {
		t.Error("an argument on the etag line was accepted")
	}
}

func TestETagJSONBadValues(t *testing.T) {
	cases := []struct {
		json   string
		option string
	}{
		{`{"hash":"md5"}`, "hash"},
		{`{"methods":["GET"]}`, "methods"},
		{`{"methods":["options"]}`, "methods"},
		{`{"verify":"sometimes"}`, "verify"},
		{`{"revalidate":"sometimes"}`, "revalidate"},
		{`{"max_body":-1}`, "max_body"},
		{`{"cache_size":-1}`, "cache_size"},
		{`{"ttl":"-1s"}`, "ttl"},
		{`{"upstream_etag":"maybe"}`, "upstream_etag"},
	}
	for _, c := range cases {
		var e ETag
		if err := json.Unmarshal([]byte(c.json), &e); err != nil {
			t.Fatalf("%s: %v", c.json, err)
		}
		err := e.Validate()
		if err == nil {
			t.Errorf("%s: accepted", c.json)
			continue
		}
		if !strings.Contains(err.Error(), c.option) {
			t.Errorf("%s: error %q does not name %s", c.json, err, c.option)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := e.Provision(ctx); err == nil || !strings.Contains(err.Error(), c.option) {
			t.Errorf("%s: Provision: %v", c.json, err)
		}
		_ = e.Cleanup()
		cancel()
	}
}

func TestETagJSONRoundTrip(t *testing.T) {
	e, err := parseETag(t, everyOption)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"hash":"sha256","methods":["PUT","POST"],"require_precondition":true,"verify":"cache","revalidate":"cache",` +
		`"max_body":2097152,` +
		`"cache_size":33554432,"ttl":90000000000,"key":"{http.request.host}{http.request.uri.path}",` +
		`"vary":["Authorization","X-Tenant"],"upstream_etag":"replace","etag_after_write":false}`
	if string(b) != want {
		t.Fatalf("JSON\n%s\nwant\n%s", b, want)
	}
	var back ETag
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, e) {
		t.Fatalf("round trip\n%+v\ngave\n%+v", e, &back)
	}
	// Caddy's own duration syntax is accepted in JSON too.
	if err := json.Unmarshal([]byte(`{"ttl":"90s"}`), &back); err != nil || back.TTL != caddy.Duration(90*time.Second) {
		t.Fatalf("ttl \"90s\": %v %v", back.TTL, err)
	}
	// Defaults stay out of the JSON, except an explicitly empty vary.
	for input, want := range map[string]string{
		"etag":              "{}",
		"etag {\n\tvary\n}": `{"vary":[]}`,
	} {
		e, err := parseETag(t, input)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		if string(b) != want {
			t.Errorf("%q: JSON %s, want %s", input, b, want)
		}
	}
}

// adaptedHandlers returns the handler names of an adapted Caddyfile in the
// order they appear, and the etag handler's JSON.
func adaptedHandlers(t *testing.T, cfg []byte) ([]string, []json.RawMessage) {
	t.Helper()
	var names []string
	var etags []json.RawMessage
	var walk func(json.RawMessage)
	walk = func(raw json.RawMessage) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil {
			var name string
			if h, ok := obj["handler"]; ok && json.Unmarshal(h, &name) == nil {
				names = append(names, name)
				if name == "etag" {
					etags = append(etags, raw)
				}
			}
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(obj[k])
			}
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) == nil {
			for _, v := range arr {
				walk(v)
			}
		}
	}
	walk(cfg)
	return names, etags
}

// TestETagCaddyfileAdapt adapts a whole site: the directive needs no order
// option, lands after encode and before reverse_proxy whatever order it is
// written in, and its JSON is the module's.
func TestETagCaddyfileAdapt(t *testing.T) {
	site := ":8080 {\n\treverse_proxy 127.0.0.1:9080\n\t" + strings.ReplaceAll(everyOption, "\n", "\n\t") + "\n\tencode gzip\n}\n"
	cfg := testutil.Adapt(t, site)
	names, etags := adaptedHandlers(t, cfg)
	order := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "subroute" })
	if !slices.Equal(order, []string{"encode", "etag", "reverse_proxy"}) {
		t.Fatalf("handler order %q, want encode, etag, reverse_proxy", order)
	}
	if len(etags) != 1 {
		t.Fatalf("%d etag handlers", len(etags))
	}
	var got, want map[string]any
	if err := json.Unmarshal(etags[0], &got); err != nil {
		t.Fatal(err)
	}
	e, _ := parseETag(t, everyOption)
	b, _ := json.Marshal(e)
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	want["handler"] = "etag"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("adapted handler\n%v\nwant\n%v", got, want)
	}

	// An empty vary list survives adaptation: it keys by the resource alone.
	cfg = testutil.Adapt(t, ":8080 {\n\tetag {\n\t\tvary\n\t}\n\treverse_proxy 127.0.0.1:9080\n}\n")
	if _, etags = adaptedHandlers(t, cfg); len(etags) != 1 {
		t.Fatalf("%d etag handlers", len(etags))
	}
	var empty ETag
	if err := json.Unmarshal(etags[0], &empty); err != nil {
		t.Fatal(err)
	}
	if ecfg, err := empty.config(); err != nil || len(ecfg.Vary) != 0 {
		t.Fatalf("adapted 'vary' with no headers keys by %q (%v), want nothing", ecfg.Vary, err)
	}

	// A matcher on the directive is kept.
	cfg = testutil.Adapt(t, ":8080 {\n\tetag /api/*\n\treverse_proxy 127.0.0.1:9080\n}\n")
	if !strings.Contains(string(cfg), `"/api/*"`) {
		t.Fatalf("matcher lost: %s", cfg)
	}

	// Loading the adapted JSON provisions the handler, and a bad value in
	// JSON is refused naming the option.
	cfg = testutil.Adapt(t, "{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n:0 {\n\tbind 127.0.0.1\n\t"+strings.ReplaceAll(everyOption, "\n", "\n\t")+"\n\treverse_proxy 127.0.0.1:9\n}\n")
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading: %v", err)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), `"verify":"cache"`, `"verify":"sometimes"`, 1)
	if bad == string(cfg) {
		t.Fatal("no verify in the adapted JSON")
	}
	if err := caddy.Load([]byte(bad), true); err == nil || !strings.Contains(err.Error(), "verify") {
		_ = caddy.Stop()
		t.Fatalf("loading a bad verify: %v", err)
	}
}

// TestCaddyfileExampleAdapts is `caddy adapt` of the repository's example.
func TestCaddyfileExampleAdapts(t *testing.T) {
	if _, err := caddy.GetModule("http.handlers.fs_notify"); err != nil {
		t.Skip("Caddyfile.example uses fs_notify, and the http.handlers.fs_notify module is not registered in this build yet")
	}
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testutil.Adapt(t, string(src)) // fails on any warning
	names, etags := adaptedHandlers(t, cfg)
	for _, want := range []string{"encode", "etag", "reverse_proxy", "fs_notify"} {
		if !slices.Contains(names, want) {
			t.Errorf("adapted example has no %s handler: %q", want, names)
		}
	}
	for _, raw := range etags {
		var e ETag
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("the example's etag handler does not validate: %v", err)
		}
	}
}
