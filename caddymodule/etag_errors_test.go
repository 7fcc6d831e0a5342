package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/etaggate/etaggate/internal/testutil"
)

// errorsUpstream answers GET /doc with a document, GET /auth with 401 and a
// challenge, GET /broken with 500, anything else with 404, and every write
// with 204, recording it.
type errorsUpstream struct {
	mu     sync.Mutex
	writes []string
}

func (u *errorsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		u.mu.Lock()
		u.writes = append(u.writes, r.Method+" "+r.URL.Path)
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch r.URL.Path {
	case "/doc":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "v1")
	case "/auth":
		w.Header().Set("WWW-Authenticate", `Basic realm="api"`)
		http.Error(w, "who are you?", http.StatusUnauthorized)
	case "/broken":
		http.Error(w, "database unavailable", http.StatusInternalServerError)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (u *errorsUpstream) writeCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.writes)
}

// hostDo sends a request to base with the given Host.
func hostDo(t *testing.T, host, method, base, path string, header ...string) wrResp {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader("v2"))
	testutil.Must(t, err)
	req.Host = host
	for _, h := range header {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(name, strings.TrimSpace(value))
	}
	res, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	testutil.Must(t, err)
	return wrResp{res.StatusCode, res.Header, b}
}

// TestCaddyETagHandleErrors: with handle_errors, every refusal of etag
// reaches the site's error routes with its status ({err.status_code}),
// keeping the headers that belong to the answer; a site on the same server
// without handle_errors still gets problem documents.
func TestCaddyETagHandleErrors(t *testing.T) {
	up := &errorsUpstream{}
	srv := httptest.NewServer(up)
	defer srv.Close()
	stale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A body that breaks off: the plain GET gets the gateway's 502.
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer stale.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	route := fmt.Sprintf("\tetag {\n\t\trequire_precondition PUT\n\t}\n\treverse_proxy /cut %s\n\treverse_proxy %s\n", strings.TrimPrefix(stale.URL, "http://"), addr)
	base := testutil.Start(t, "http://rendered.test:{port} {\n\tbind 127.0.0.1\n\thandle_errors {\n\t\trespond \"rendered {err.status_code}: {err.message}\"\n\t}\n"+route+"}\n"+
		"http://plain.test:{port} {\n\tbind 127.0.0.1\n"+route+"}\n")
	etag := hostDo(t, "rendered.test", http.MethodGet, base, "/doc").header.Get("ETag")
	if etag == "" {
		t.Fatal("GET /doc has no ETag")
	}

	for _, tc := range []struct {
		name, method, path string
		header             []string
		status             int
		keep               string // a header that belongs to the answer
		want               string // its value
	}{
		{"malformed If-Match", http.MethodGet, "/doc", []string{"If-Match: abc"}, 400, "", ""},
		{"stale If-Match on a read", http.MethodGet, "/doc", []string{`If-Match: "stale"`}, 412, "Etag", etag},
		{"stale If-Match on a write", http.MethodPatch, "/doc", []string{`If-Match: "stale"`}, 412, "Etag", etag},
		{"no precondition", http.MethodPut, "/doc", nil, 428, "", ""},
		{"DELETE of nothing", http.MethodDelete, "/missing", []string{`If-Match: "a"`}, 404, "", ""},
		{"check GET refused", http.MethodPatch, "/auth", []string{"If-Match: *"}, 401, "Www-Authenticate", `Basic realm="api"`},
		{"check GET failed", http.MethodPatch, "/broken", []string{"If-Match: *"}, 502, "", ""},
		{"conflicting overrides", http.MethodPost, "/doc", []string{"X-HTTP-Method-Override: PUT", "X-HTTP-Method: PATCH"}, 400, "", ""},
		{"upstream body broke off", http.MethodGet, "/cut", nil, 502, "", ""},
	} {
		r := hostDo(t, "rendered.test", tc.method, base, tc.path, tc.header...)
		if r.status != tc.status || !strings.HasPrefix(string(r.body), fmt.Sprintf("rendered %d: ", tc.status)) {
			t.Errorf("%s: %d %q, want %d rendered by handle_errors", tc.name, r.status, r.body, tc.status)
		}
		if tc.keep != "" && r.header.Get(tc.keep) != tc.want {
			t.Errorf("%s: %s %q, want %q", tc.name, tc.keep, r.header.Get(tc.keep), tc.want)
		}
		if ct := r.header.Get("Content-Type"); strings.Contains(ct, "problem") || r.header.Get("Last-Modified") != "" {
			t.Errorf("%s: the rendered error carries Content-Type %q, Last-Modified %q", tc.name, ct, r.header.Get("Last-Modified"))
		}

		p := hostDo(t, "plain.test", tc.method, base, tc.path, tc.header...)
		wrProblem(t, tc.name+" without handle_errors", p, tc.status)
		if tc.keep != "" && p.header.Get(tc.keep) != tc.want {
			t.Errorf("%s without handle_errors: %s %q, want %q", tc.name, tc.keep, p.header.Get(tc.keep), tc.want)
		}
	}
	if n := up.writeCount(); n != 0 {
		t.Fatalf("%d refused writes reached the upstream", n)
	}
}
