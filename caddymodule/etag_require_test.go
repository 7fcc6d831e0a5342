package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestCaddyETagRequirePerMethod: require_precondition PUT PATCH answers 428
// to a PUT or PATCH without a precondition, forwards a DELETE without one
// (still serialised), and still enforces a DELETE's If-Match.
func TestCaddyETagRequirePerMethod(t *testing.T) {
	up := startWrUpstream(t)
	base := wrSites(t, "\tetag {\n\t\trequire_precondition PUT PATCH\n\t}\n\treverse_proxy "+up.addr)[0]
	for _, method := range []string{http.MethodPut, http.MethodPatch} {
		path := "/per-method/" + method
		up.set(path, "v1", time.Now())
		r := wrDo(t, method, base+path, "v2")
		p := wrProblem(t, method+" without a precondition", r, http.StatusPreconditionRequired)
		if !strings.Contains(p["detail"].(string), method) {
			t.Errorf("the 428 does not name %s: %s", method, r.body)
		}
		if w := up.writesTo(path); len(w) != 0 {
			t.Fatalf("%s without a precondition was forwarded", method)
		}
		if r := wrDo(t, method, base+path, "v2", "If-Match: "+wrGetETag(t, base+path)); r.status != http.StatusNoContent {
			t.Fatalf("%s with the current ETag: %d %s", method, r.status, r.body)
		}
	}

	// A DELETE without a precondition goes through, under the lock.
	path := "/per-method/DELETE"
	up.set(path, "v1", time.Now())
	held, release := make(chan struct{}), make(chan struct{})
	up.mu.Lock()
	up.holdWrite = func(r *http.Request) error {
		close(held)
		<-release
		return nil
	}
	up.mu.Unlock()
	done := make(chan wrResp, 1)
	go func() {
		r, err := wrSend(context.Background(), http.MethodDelete, base+path, nil)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the DELETE never reached the upstream")
	}
	if n := wrLockedKeys(t); n != 1 {
		t.Errorf("%d keys locked while the unconditional DELETE is upstream, want 1", n)
	}
	close(release)
	if r := <-done; r.status != http.StatusNoContent {
		t.Fatalf("DELETE without a precondition: %d %s, want it forwarded", r.status, r.body)
	}
	up.mu.Lock()
	up.holdWrite = nil
	up.mu.Unlock()

	// A DELETE with If-Match is still checked.
	up.set(path, "v1", time.Now())
	r := wrDo(t, http.MethodDelete, base+path, "", `If-Match: "stale"`)
	wrProblem(t, "DELETE with a stale If-Match", r, http.StatusPreconditionFailed)
	if n := len(up.writesTo(path)); n != 1 {
		t.Fatalf("the upstream saw %d DELETEs, want only the unconditional one", n)
	}
	if r := wrDo(t, http.MethodDelete, base+path, "", "If-Match: "+wrGetETag(t, base+path)); r.status != http.StatusNoContent {
		t.Fatalf("DELETE with the current ETag: %d %s", r.status, r.body)
	}
	wrEventuallyUnlocked(t)
}

// TestETagRequireMethodsConfig: the Caddyfile's method list maps to
// require_precondition_methods, and Validate refuses a method that is not
// enforced.
func TestETagRequireMethodsConfig(t *testing.T) {
	e, err := parseETag(t, "etag {\n\trequire_precondition put PATCH\n}")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	if string(b) != `{"require_precondition_methods":["put","PATCH"]}` {
		t.Fatalf("JSON %s", b)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("PUT PATCH among the default methods: %v", err)
	}
	for _, input := range []string{
		"etag {\n\tmethods PUT DELETE\n\trequire_precondition PATCH\n}",
		"etag {\n\trequire_precondition POST\n}",
	} {
		e, err := parseETag(t, input)
		if err != nil {
			t.Fatal(err)
		}
		err = e.Validate()
		if err == nil || !strings.Contains(err.Error(), "require_precondition") || strings.HasPrefix(err.Error(), "etag:") {
			t.Errorf("%q: Validate = %v, want an error naming require_precondition (without the etag: prefix Caddy adds)", input, err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := e.Provision(ctx); err == nil {
			t.Errorf("%q: provisioned", input)
		}
		_ = e.Cleanup()
		cancel()
	}
}
