package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	body := "hello"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(r.Body)
			body = string(b)
			w.WriteHeader(204)
			return
		}
		io.WriteString(w, body)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	m, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gw := httptest.NewServer(m.Wrap(rp))
	defer gw.Close()

	res, err := http.Get(gw.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	etag := res.Header.Get("ETag")
	t.Logf("%d %q etag=%s", res.StatusCode, b, etag)
	if etag == "" || string(b) != "hello" {
		t.Fatal("no etag")
	}
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	req.Header.Set("If-None-Match", etag)
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if res.StatusCode != 304 {
		t.Fatalf("got %d", res.StatusCode)
	}
	req, _ = http.NewRequest("PUT", gw.URL+"/x", strings.NewReader("v2"))
	req.Header.Set("If-Match", etag)
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	t.Logf("put %d etag=%s", res.StatusCode, res.Header.Get("ETag"))
	if res.StatusCode != 204 || res.Header.Get("ETag") == "" || res.Header.Get("ETag") == etag {
		t.Fatalf("put: %d", res.StatusCode)
	}
	req, _ = http.NewRequest("PUT", gw.URL+"/x", strings.NewReader("v3"))
	req.Header.Set("If-Match", etag)
	res, _ = http.DefaultClient.Do(req)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	t.Logf("stale put %d %s", res.StatusCode, b)
	if res.StatusCode != 412 || body != "v2" {
		t.Fatalf("stale put: %d", res.StatusCode)
	}
}
