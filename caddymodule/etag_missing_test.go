package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestCaddyETagDeleteMissing: a DELETE whose If-Match lists tags, on a
// resource whose check GET answers 404 or 410, gets 404 with a problem body
// and is not forwarded; a PUT or PATCH gets 412, and If-Match: * keeps its
// 412 too.
func TestCaddyETagDeleteMissing(t *testing.T) {
	var mu sync.Mutex
	var writes []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			mu.Lock()
			writes = append(writes, r.Method+" "+r.URL.Path)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		switch r.URL.Path {
		case "/gone":
			http.Error(w, "gone", http.StatusGone)
		default:
			http.Error(w, "not found", http.StatusNotFound)
		}
	}))
	defer up.Close()
	base := wrSites(t, "\tetag\n\treverse_proxy "+strings.TrimPrefix(up.URL, "http://"))[0]

	for _, tc := range []struct {
		method string
		header []string
		status int
	}{
		{http.MethodDelete, []string{`If-Match: "a"`}, http.StatusNotFound},
		{http.MethodDelete, []string{`If-Match: "a", "b"`}, http.StatusNotFound},
		{http.MethodDelete, []string{`If-Match: "a"`, "If-None-Match: *"}, http.StatusNotFound},
		{http.MethodPost, []string{`If-Match: "a"`, "X-HTTP-Method-Override: DELETE"}, http.StatusNotFound},
		{http.MethodDelete, []string{"If-Match: *"}, http.StatusPreconditionFailed},
		{http.MethodPut, []string{`If-Match: "a"`}, http.StatusPreconditionFailed},
		{http.MethodPatch, []string{`If-Match: "a"`}, http.StatusPreconditionFailed},
	} {
		for _, path := range []string{"/missing", "/gone"} {
			what := tc.method + " " + path + " " + strings.Join(tc.header, ", ")
			r := wrDo(t, tc.method, base+path, "", tc.header...)
			p := wrProblem(t, what, r, tc.status)
			if tc.status == http.StatusNotFound && p["header"] != nil {
				t.Errorf("%s: the 404 names a header: %s", what, r.body)
			}
			if r.header.Get("ETag") != "" {
				t.Errorf("%s: ETag %q on a missing resource", what, r.header.Get("ETag"))
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(writes) != 0 {
		t.Fatalf("forwarded %v", writes)
	}
}
