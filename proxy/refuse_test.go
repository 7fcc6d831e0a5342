package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// routedError is what a test RouteError hands back: the refusal's status.
type routedError struct {
	status int
	err    error
}

func (e routedError) Error() string { return e.err.Error() }

// TestRefusalsRouted: with RouteError taking the refusals, the engine
// returns them with their status and writes no body, and the headers that
// belong to the answer stay on the response: ETag on a 412, Retry-After on
// the 503 of a lock wait that ran out.
func TestRefusalsRouted(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	cfg := DefaultConfig()
	cfg.LockWait = 300 * time.Millisecond
	cfg.RouteError = func(r *http.Request, status int, err error) error { return routedError{status, err} }
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	etag := wrServe(t, m, s, http.MethodGet, "/a", "").Header().Get("Etag")

	serve := func(method, body string, hdr ...string) (*httptest.ResponseRecorder, routedError) {
		req := httptest.NewRequest(method, "http://gw/a", strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		var re routedError
		if err := m.ServeHTTP(rec, req, s); !errors.As(err, &re) {
			t.Fatalf("%s %v: returned %v, want the routed refusal", method, hdr, err)
		}
		if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
			t.Errorf("%s %v: wrote %q (%s) although the refusal was routed", method, hdr, rec.Body, rec.Header().Get("Content-Type"))
		}
		return rec, re
	}

	rec, re := serve(http.MethodPut, "v2", "If-Match", `"stale"`)
	if re.status != http.StatusPreconditionFailed || rec.Header().Get("Etag") != etag {
		t.Errorf("stale If-Match: routed %d with ETag %q, want 412 with %s", re.status, rec.Header().Get("Etag"), etag)
	}
	if _, re = serve(http.MethodGet, "", "If-Match", "abc"); re.status != http.StatusBadRequest {
		t.Errorf("malformed If-Match: routed %d, want 400", re.status)
	}

	entered, release := wrHold(s, "/a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		wrServe(t, m, s, http.MethodPut, "/a", "v2")
	}()
	wrWait(t, entered, "the first PUT upstream")
	rec, re = serve(http.MethodPut, "v3", "If-Match", etag)
	close(release)
	<-done
	if re.status != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("lock wait ran out: routed %d with Retry-After %q, want 503 with 1", re.status, rec.Header().Get("Retry-After"))
	}
	if n := s.count(http.MethodPut, "/a"); n != 1 {
		t.Errorf("the upstream saw %d PUTs, want only the first", n)
	}
}
