package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
)

// semanticAPI is a legacy API whose bodies carry volatile members: at
// /items/1 a Box-like entity with a request clock, a request id, a version
// member ("etag"), a nested owner and a list of parts, each stamped when
// read; at /docs/<n> documents stored as sent and served with a
// "generated_at" first; /broken is declared JSON but is not; /text is
// plain text.
type semanticAPI struct {
	mu      sync.Mutex
	srv     *httptest.Server
	n       int    // requests served: the request id
	name    string // /items/1's state
	version int
	indent  bool   // pretty-print /items/1
	ctype   string // /items/1's Content-Type
	docs    map[string][]byte
	writes  int // PUTs that reached the API
}

func startSemanticAPI(t *testing.T) *semanticAPI {
	t.Helper()
	u := &semanticAPI{name: "widget", version: 3, ctype: "application/json; charset=utf-8", docs: map[string][]byte{}}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *semanticAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n++
	now := time.Now().UTC().Format(time.RFC3339Nano)
	switch {
	case r.URL.Path == "/items/1" && r.Method == http.MethodGet:
		body := fmt.Appendf(nil, `{"generated_at":%q,"request_id":"req-%d","id":1,"etag":"%d","name":%q,`+
			`"owner":{"login":"ann","updated_at":%q},"parts":[{"sku":"a-1","fetched_at":%q},{"sku":"b-2","fetched_at":%q}],"tags":["x","y"]}`,
			now, u.n, u.version, u.name, now, now, now)
		if u.indent {
			var b bytes.Buffer
			_ = json.Indent(&b, body, "", "    ")
			body = b.Bytes()
		}
		w.Header().Set("Content-Type", u.ctype)
		w.Write(body)
	case r.URL.Path == "/items/1" && r.Method == http.MethodPut:
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.writes++
		u.name = in.Name
		u.version++
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(r.URL.Path, "/docs/") && r.Method == http.MethodGet:
		doc, ok := u.docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"generated_at":%q,%s`, now, doc[1:])
	case strings.HasPrefix(r.URL.Path, "/docs/") && r.Method == http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		b = bytes.TrimSpace(b)
		if len(b) < 3 || b[0] != '{' {
			http.Error(w, "a document is a non-empty object", http.StatusBadRequest)
			return
		}
		if r.Header.Get("X-Normalise") != "" { // stored with its members sorted
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			b, _ = json.Marshal(m)
		}
		u.writes++
		_, existed := u.docs[r.URL.Path]
		u.docs[r.URL.Path] = b
		if !existed {
			w.WriteHeader(http.StatusCreated)
		}
	case r.URL.Path == "/broken":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id": 1, "name": "trunc`)
	case r.URL.Path == "/text":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "plain text, hashed as bytes\n")
	default:
		http.NotFound(w, r)
	}
}

func (u *semanticAPI) set(f func(u *semanticAPI)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f(u)
}

// semanticLog is a Caddy log of the etag handler's warnings, written to a
// file the test reads.
func semanticLog(t *testing.T) (globals, path string) {
	path = filepath.Join(t.TempDir(), "etag.log")
	return fmt.Sprintf("log etag {\n\toutput file %s\n\tformat json\n\tlevel WARN\n\tinclude http.handlers.etag\n}", path), path
}

// logWith returns the lines of a Caddy log file that contain all of want.
func logWith(t *testing.T, path string, want ...string) []string {
	t.Helper()
	var out []string
	for _, l := range logLines(t, path) {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

type semanticResp struct {
	status int
	etag   string
	body   string
}

func semanticDo(t *testing.T, method, url, body string, header ...string) semanticResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	testutil.Must(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testutil.Must(t, err)
	return semanticResp{status: resp.StatusCode, etag: resp.Header.Get("ETag"), body: string(b)}
}

const volatileMembers = "/generated_at /request_id /owner/updated_at /parts/*/fetched_at"

// TestSemanticIgnore puts etag with json_ignore in front of an API whose
// every body differs: the volatile members do not count, everything else
// does, and If-None-Match and If-Match work again.
func TestSemanticIgnore(t *testing.T) {
	u := startSemanticAPI(t)
	base := testutil.Start(t, fmt.Sprintf(":{port} {\n\tbind 127.0.0.1\n\tetag {\n\t\tjson_ignore %s\n\t}\n\treverse_proxy %s\n}\n", volatileMembers, u.srv.Listener.Addr()))
	url := base + "/items/1"

	first := semanticDo(t, "GET", url, "")
	second := semanticDo(t, "GET", url, "")
	if first.status != 200 || first.etag == "" || first.body == second.body {
		t.Fatalf("GETs: %+v, %+v: want 200s with an ETag and different bodies", first, second)
	}
	if second.etag != first.etag {
		t.Fatalf("two GETs of an unchanged resource: ETag %s then %s", first.etag, second.etag)
	}
	if !strings.HasPrefix(first.etag, `"`) {
		t.Errorf("ETag %s is not strong", first.etag)
	}
	if r := semanticDo(t, "GET", url, "", "If-None-Match", first.etag); r.status != http.StatusNotModified || r.etag != first.etag {
		t.Errorf("If-None-Match with the tag: %d %s, want 304 %s", r.status, r.etag, first.etag)
	}
	if r := semanticDo(t, "HEAD", url, ""); r.etag != first.etag {
		t.Errorf("HEAD: ETag %s, want %s", r.etag, first.etag)
	}

	u.set(func(u *semanticAPI) { u.indent = true })
	if r := semanticDo(t, "GET", url, ""); r.etag != first.etag || !strings.Contains(r.body, "\n    ") {
		t.Errorf("the same content pretty-printed: ETag %s, want %s (body %.60q)", r.etag, first.etag, r.body)
	}
	u.set(func(u *semanticAPI) { u.ctype = "application/vnd.api+json" })
	if r := semanticDo(t, "GET", url, ""); r.etag != first.etag {
		t.Errorf("served as application/vnd.api+json: ETag %s, want %s", r.etag, first.etag)
	}

	// A write based on the tag goes through and changes the tag; one based
	// on the old tag is refused before the API.
	if r := semanticDo(t, "PUT", url, `{"name":"gadget"}`, "If-Match", first.etag, "Content-Type", "application/json"); r.status != http.StatusNoContent {
		t.Fatalf("PUT with If-Match: the current tag: %d %s", r.status, r.body)
	}
	changed := semanticDo(t, "GET", url, "")
	if changed.etag == first.etag || !strings.Contains(changed.body, "gadget") {
		t.Fatalf("after a real change: ETag %s, the same as before", changed.etag)
	}
	if r := semanticDo(t, "PUT", url, `{"name":"lost"}`, "If-Match", first.etag); r.status != http.StatusPreconditionFailed || r.etag != changed.etag {
		t.Errorf("PUT with the old tag: %d %s, want 412 with %s", r.status, r.etag, changed.etag)
	}
	u.set(func(u *semanticAPI) {
		if u.writes != 1 {
			t.Errorf("%d PUTs reached the API, want 1", u.writes)
		}
	})
}

// TestSemanticOnly keeps only the entity's own version member (Box's
// "etag"): nothing else changes the tag, a new version does, and a body
// without the member counts whole.
func TestSemanticOnly(t *testing.T) {
	u := startSemanticAPI(t)
	base := testutil.Start(t, fmt.Sprintf(":{port} {\n\tbind 127.0.0.1\n\tetag {\n\t\tjson_only /etag\n\t}\n\treverse_proxy %s\n}\n", u.srv.Listener.Addr()))
	url := base + "/items/1"

	first := semanticDo(t, "GET", url, "")
	if r := semanticDo(t, "GET", url, ""); r.etag != first.etag || r.body == first.body {
		t.Fatalf("two GETs: ETag %s then %s", first.etag, r.etag)
	}
	u.set(func(u *semanticAPI) { u.name = "renamed without a new version" })
	if r := semanticDo(t, "GET", url, ""); r.etag != first.etag {
		t.Errorf("a change the version member does not show: ETag %s, want %s: only /etag counts", r.etag, first.etag)
	}
	u.set(func(u *semanticAPI) { u.version++ })
	if r := semanticDo(t, "GET", url, ""); r.etag == first.etag {
		t.Errorf("a new version: ETag %s, the same as before", r.etag)
	}

	u.set(func(u *semanticAPI) { u.docs["/docs/1"] = []byte(`{"a":1}`) })
	d1, d2 := semanticDo(t, "GET", base+"/docs/1", ""), semanticDo(t, "GET", base+"/docs/1", "")
	if d1.status != 200 || d1.etag == "" || d1.etag == d2.etag {
		t.Errorf("a body without /etag counts whole, generated_at included: ETags %s, %s", d1.etag, d2.etag)
	}
}

// TestSemanticNotJSON hashes a body declared JSON that is not, and a plain
// text body, as bytes, and logs each resource once.
func TestSemanticNotJSON(t *testing.T) {
	u := startSemanticAPI(t)
	globals, logPath := semanticLog(t)
	base := testutil.StartWith(t, globals, fmt.Sprintf(":{port} {\n\tbind 127.0.0.1\n\tetag {\n\t\tjson_ignore /generated_at\n\t}\n\treverse_proxy %s\n}\n", u.srv.Listener.Addr()))
	for _, c := range []struct{ path, body, msg string }{
		{"/broken", `{"id": 1, "name": "trunc`, "body is not valid JSON; its ETag is the hash of its bytes"},
		{"/text", "plain text, hashed as bytes\n", "body is not application/json or +json; its ETag is the hash of its bytes"},
	} {
		for range 3 {
			r := semanticDo(t, "GET", base+c.path, "")
			if r.status != 200 || r.body != c.body || r.etag != hashing.XXH3.Sum([]byte(c.body)) {
				t.Fatalf("GET %s: %d %s %q, want 200 with the hash of the bytes %s", c.path, r.status, r.etag, r.body, hashing.XXH3.Sum([]byte(c.body)))
			}
		}
		testutil.Eventually(t, "a warning for "+c.path, func() bool { return len(logWith(t, logPath, c.msg, `"uri":"`+c.path+`"`)) > 0 })
		if lines := logWith(t, logPath, c.msg, `"uri":"`+c.path+`"`); len(lines) != 1 || !strings.Contains(lines[0], `"level":"warn"`) {
			t.Errorf("%s: %d warnings after three GETs, want one at warn: %q", c.path, len(lines), lines)
		}
	}
	if lines := logWith(t, logPath, "not valid JSON", "ends inside a value"); len(lines) != 1 {
		t.Errorf("the warning does not say why the body is not JSON: %q", logLines(t, logPath))
	}
}

// TestSemanticAfterPut applies the after-write rule of RFC 9110 §9.3.4 to
// the semantic hash: the API adds generated_at to what it stores, which
// json_ignore declares not part of the state, so the PUT's response
// carries the new ETag; without json_ignore it cannot.
func TestSemanticAfterPut(t *testing.T) {
	u := startSemanticAPI(t)
	for _, c := range []struct {
		options string
		tagged  bool
	}{
		{"json_ignore /generated_at", true},
		{"", false},
	} {
		t.Run(fmt.Sprintf("tagged=%v", c.tagged), func(t *testing.T) {
			etag := "etag"
			if c.options != "" {
				etag = "etag {\n\t\t" + c.options + "\n\t}"
			}
			base := testutil.Start(t, fmt.Sprintf(":{port} {\n\tbind 127.0.0.1\n\t%s\n\treverse_proxy %s\n}\n", etag, u.srv.Listener.Addr()))
			url := fmt.Sprintf("%s/docs/%v", base, c.tagged)
			created := semanticDo(t, "PUT", url, "{\n  \"title\": \"draft\",\n  \"lines\": [1, 2]\n}\n", "If-None-Match", "*", "Content-Type", "application/json")
			if created.status != http.StatusCreated {
				t.Fatalf("create-only PUT: %d %s", created.status, created.body)
			}
			current := semanticDo(t, "GET", url, "")
			if (created.etag != "") != c.tagged || (c.tagged && created.etag != current.etag) {
				t.Fatalf("PUT answered ETag %q; the GET after it %s; want it tagged: %v", created.etag, current.etag, c.tagged)
			}
			if !c.tagged {
				return
			}
			// Content stored as sent, in another order, is tagged too; content
			// the API stores otherwise (its members sorted) is not.
			r := semanticDo(t, "PUT", url, `{"title":"final","lines":[3]}`, "If-Match", current.etag)
			if after := semanticDo(t, "GET", url, ""); r.status != http.StatusOK || r.etag == "" || r.etag != after.etag {
				t.Errorf("PUT stored as sent: %d with ETag %q, the GET after it %s", r.status, r.etag, after.etag)
			}
			r = semanticDo(t, "PUT", url, `{"title":"final","lines":[4]}`, "If-Match", r.etag, "X-Normalise", "1")
			if r.status != http.StatusOK || r.etag != "" {
				t.Errorf("PUT stored with its members sorted: %d with ETag %q, want 200 without one", r.status, r.etag)
			}
		})
	}
}

// TestSemanticJSONConfig configures the options in Caddy JSON, and refuses
// a bad pointer and both options at once, naming the option.
func TestSemanticJSONConfig(t *testing.T) {
	u := startSemanticAPI(t)
	port := testutil.FreePort(t)
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"automatic_https":{"disable":true},"routes":[{"handle":[
		{"handler":"etag","json_ignore":["/generated_at","/request_id","/owner/updated_at","/parts/*/fetched_at"]},
		{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}]}]}}}}}`, port, u.srv.Listener.Addr().String())
	loadJSON(t, cfg)
	url := fmt.Sprintf("http://127.0.0.1:%d/items/1", port)
	if a, b := semanticDo(t, "GET", url, ""), semanticDo(t, "GET", url, ""); a.etag == "" || a.etag != b.etag {
		t.Errorf("json_ignore in JSON: ETags %s, %s", a.etag, b.etag)
	}
	for _, c := range []struct{ handler, want string }{
		{`{"handler":"etag","json_ignore":["generated_at"]}`, `json_ignore: invalid JSON pointer "generated_at": a pointer starts with "/"`},
		{`{"handler":"etag","json_only":["/a~2"]}`, `json_only: invalid JSON pointer "/a~2"`},
		{`{"handler":"etag","json_ignore":["/a"],"json_only":["/b"]}`, "json_ignore and json_only exclude each other"},
	} {
		bad := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[%s]}]}}}}}`, testutil.FreePort(t), c.handler)
		if err := loadJSONErr(bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.handler, err, c.want)
		}
	}
}

// loadJSON runs cfg as Caddy's configuration until the test ends.
func loadJSON(t *testing.T, cfg string) {
	t.Helper()
	testutil.Must(t, caddy.Load([]byte(cfg), true))
	t.Cleanup(func() { _ = caddy.Stop() })
}

// loadJSONErr returns why Caddy refuses cfg.
func loadJSONErr(cfg string) error { return caddy.Load([]byte(cfg), true) }
