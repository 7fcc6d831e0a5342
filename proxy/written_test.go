package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

// TestWrittenToldOfEvery2xx: Config.Written hears of every write the
// upstream answered 2xx, enforced or not, with the method a method
// override names and the ETag read after the write; never of a write the
// gateway refused or the upstream failed.
func TestWrittenToldOfEvery2xx(t *testing.T) {
	var mu sync.Mutex
	doc := "v0"
	var told []string
	cfg := DefaultConfig()
	cfg.Methods = []string{http.MethodPut, http.MethodDelete}
	cfg.Written = func(w Written) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, strings.Join([]string{w.Method, w.Request.URL.Path, http.StatusText(w.Status), w.Header.Get("Location"), w.ETag}, " "))
	}
	g := startReadGateway(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodGet:
			_, _ = io.WriteString(w, doc)
		case r.URL.Path == "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/new")
			w.WriteHeader(http.StatusCreated)
		default:
			b, _ := io.ReadAll(r.Body)
			doc = string(b) + "!" // stored transformed: no ETag on a PUT's answer
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	put := func(path, body string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, g.url+path, strings.NewReader(body))
		for _, h := range header {
			name, value, _ := strings.Cut(h, ":")
			req.Header.Set(name, strings.TrimSpace(value))
		}
		res, err := g.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := put("/doc", "v1"); s != 204 {
		t.Fatalf("PUT: %d", s)
	}
	if s := put("/doc", "v2", `If-Match: "stale"`); s != 412 {
		t.Fatalf("stale PUT: %d", s)
	}
	if s := put("/fail", "v2"); s != 502 && s != 500 {
		t.Fatalf("failing PUT: %d", s)
	}
	if s := put("/doc", "", "X-HTTP-Method-Override: DELETE"); s != 204 {
		t.Fatalf("overridden PUT: %d", s)
	}
	for _, m := range []string{http.MethodPost, http.MethodPatch} {
		if res, _ := g.do(t, m, "/doc"); res.StatusCode/100 != 2 {
			t.Fatalf("%s: %d", m, res.StatusCode)
		}
	}
	want := []string{
		"PUT /doc No Content  " + hashing.XXH3.Sum([]byte("v1!")),
		"DELETE /doc No Content  ",
		"POST /doc Created /new ",
		"PATCH /doc No Content  ",
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(told, want) {
		t.Fatalf("told\n%q\nwant\n%q", told, want)
	}
}
