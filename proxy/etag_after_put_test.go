package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestETagAfterPutOnlyForUntransformedContent checks RFC 9110 §9.3.4: a
// successful PUT's response carries the new ETag only when the upstream
// stored the content as sent; a PATCH's always does (RFC 5789).
func TestETagAfterPutOnlyForUntransformedContent(t *testing.T) {
	var mu sync.Mutex
	doc := "v1"
	transform := false
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			io.WriteString(w, doc)
		case http.MethodPut, http.MethodPatch:
			b, _ := io.ReadAll(r.Body)
			doc = string(b)
			if transform {
				doc += " (stored)"
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	m, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gw := httptest.NewServer(m.Wrap(httputil.NewSingleHostReverseProxy(u)))
	defer gw.Close()

	get := func() string {
		t.Helper()
		res, err := http.Get(gw.URL + "/doc")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("ETag")
	}
	write := func(method, body, ifMatch string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, gw.URL+"/doc", strings.NewReader(body))
		req.Header.Set("If-Match", ifMatch)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("%s %q: status %d", method, body, res.StatusCode)
		}
		return res
	}

	// Stored verbatim: the PUT's ETag is the new representation's.
	res := write(http.MethodPut, "v2", get())
	if got, want := res.Header.Get("ETag"), get(); got == "" || got != want {
		t.Errorf("verbatim PUT: ETag %q, a GET then says %q", got, want)
	}

	// Stored transformed: no ETag on the PUT, though the write went through.
	mu.Lock()
	transform = true
	mu.Unlock()
	res = write(http.MethodPut, "v3", get())
	if got := res.Header.Get("ETag"); got != "" {
		t.Errorf("transformed PUT: ETag %q, want none", got)
	}
	mu.Lock()
	stored := doc
	mu.Unlock()
	if stored != "v3 (stored)" {
		t.Fatalf("upstream holds %q", stored)
	}

	// A PATCH's response always names the patched representation.
	res = write(http.MethodPatch, "v4", get())
	if got, want := res.Header.Get("ETag"), get(); got == "" || got != want {
		t.Errorf("PATCH: ETag %q, a GET then says %q", got, want)
	}
}
