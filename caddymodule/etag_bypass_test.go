package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// These tests try to get a write past require_precondition, or past the
// preconditions altogether, with fields the gateway could mistake for
// protection and with method overrides that a legacy upstream honours.

// TestCaddyETagRequireEvaluatedPrecondition: under require_precondition a
// write is forwarded only with a precondition that is evaluated against the
// current representation; one that RFC 9110 has ignored gets 428.
func TestCaddyETagRequireEvaluatedPrecondition(t *testing.T) {
	up := startWrUpstream(t)
	rp := "\treverse_proxy " + up.addr
	bases := wrSites(t, "\tetag {\n\t\trequire_precondition\n\t}\n"+rp, "\tetag\n"+rp)
	required, optional := bases[0], bases[1]
	lm := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	valid := lm.Format(http.TimeFormat)
	for i, tc := range []struct {
		name     string
		modified time.Time // zero: the upstream sends no Last-Modified
		missing  bool
		header   []string
		status   int    // under require_precondition; 0 is forwarded
		field    string // the ignored field the 428 names
	}{
		{"If-Unmodified-Since garbage", lm, false, []string{"If-Unmodified-Since: garbage"}, 428, "If-Unmodified-Since"},
		{"If-Unmodified-Since empty", lm, false, []string{"If-Unmodified-Since:"}, 428, "If-Unmodified-Since"},
		{"If-Unmodified-Since year 10000", lm, false, []string{"If-Unmodified-Since: Sat, 01 Jan 10000 00:00:00 GMT"}, 428, "If-Unmodified-Since"},
		{"If-Unmodified-Since, no Last-Modified upstream", time.Time{}, false, []string{"If-Unmodified-Since: " + valid}, 428, "If-Unmodified-Since"},
		{"If-Unmodified-Since on a missing resource", lm, true, []string{"If-Unmodified-Since: " + valid}, 428, "If-Unmodified-Since"},
		{"If-None-Match empty", lm, false, []string{"If-None-Match:"}, 428, "If-None-Match"},
		{"If-None-Match only commas", lm, false, []string{"If-None-Match: , ,"}, 428, "If-None-Match"},
		{"empty If-None-Match and garbage If-Unmodified-Since", lm, false, []string{"If-None-Match:", "If-Unmodified-Since: x"}, 428, "If-None-Match"},
		// Evaluated preconditions still pass or fail on their merits.
		{"If-Unmodified-Since valid", lm, false, []string{"If-Unmodified-Since: " + valid}, 0, ""},
		{"If-Unmodified-Since earlier", lm, false, []string{"If-Unmodified-Since: " + lm.Add(-time.Hour).Format(http.TimeFormat)}, 412, ""},
		{"If-None-Match a tag", lm, false, []string{`If-None-Match: "other"`}, 0, ""},
		{"If-None-Match * on a missing resource", lm, true, []string{"If-None-Match: *"}, 0, ""},
		{"garbage If-Unmodified-Since beside If-Match *", lm, false, []string{"If-Match: *", "If-Unmodified-Since: x"}, 0, ""},
	} {
		for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			for _, base := range []string{required, optional} {
				what := fmt.Sprintf("%s %s (%s)", method, tc.name, map[string]string{required: "required", optional: "optional"}[base])
				path := fmt.Sprintf("/req/%d/%s/%s", i, method, strings.TrimPrefix(base, "http://127.0.0.1:"))
				if !tc.missing {
					up.set(path, "v1", tc.modified)
				}
				before := len(up.writesTo(path))
				body := ""
				if method != http.MethodDelete {
					body = "v2"
				}
				r := wrDo(t, method, base+path, body, tc.header...)
				forwarded := len(up.writesTo(path)) - before
				want := tc.status
				if base == optional && want == http.StatusPreconditionRequired {
					want = 0 // ignored, as RFC 9110 says, and forwarded
				}
				if want == 0 {
					if w := up.writesTo(path); forwarded != 1 || r.status != w[len(w)-1].status {
						t.Errorf("%s: %d with %d writes forwarded, want it forwarded and the upstream's answer: %s", what, r.status, forwarded, r.body)
					}
					continue
				}
				p := wrProblem(t, what, r, want)
				if forwarded != 0 {
					t.Errorf("%s: answered %d but forwarded %d writes", what, r.status, forwarded)
				}
				if want == http.StatusPreconditionRequired && p["header"] != tc.field {
					t.Errorf("%s: the 428 names %v, want %s: %s", what, p["header"], tc.field, r.body)
				}
			}
		}
	}
	wrEventuallyUnlocked(t)
}

// TestCaddyETagMethodOverride: a request whose method-override field names
// an enforced method is handled as that method (required, locked, checked),
// and goes upstream as sent, since the upstream acts on the field.
func TestCaddyETagMethodOverride(t *testing.T) {
	up := startWrUpstream(t)
	rp := "\treverse_proxy " + up.addr
	bases := wrSites(t, "\tetag {\n\t\trequire_precondition\n\t}\n"+rp, "\tetag\n"+rp)
	required, optional := bases[0], bases[1]

	for _, field := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodPut} {
			path := "/override/" + field + "/" + method
			up.set(path, "v1", time.Now())
			what := method + " with " + field + ": DELETE"
			r := wrDo(t, method, required+path, "", field+": DELETE")
			p := wrProblem(t, what+" and no precondition", r, http.StatusPreconditionRequired)
			if !strings.Contains(p["detail"].(string), "DELETE") {
				t.Errorf("%s: the 428 does not name the method it enforced: %s", what, r.body)
			}
			r = wrDo(t, method, required+path, "", field+": delete", `If-Match: "stale"`)
			wrProblem(t, what+" and a stale If-Match", r, http.StatusPreconditionFailed)
			if cur := wrGetETag(t, required+path); r.header.Get("ETag") != cur {
				t.Errorf("%s: the 412 carries ETag %q, want %s", what, r.header.Get("ETag"), cur)
			}
			if w := up.writesTo(path); len(w) != 0 {
				t.Fatalf("%s: %d writes forwarded before a precondition held", what, len(w))
			}
		}
	}

	// With the current ETag the POST goes upstream as it was sent, and the
	// upstream deletes.
	path := "/override/delete"
	up.set(path, "v1", time.Now())
	e := wrGetETag(t, required+path)
	r := wrDo(t, http.MethodPost, required+path, "", "X-HTTP-Method-Override: DELETE", "If-Match: "+e)
	if r.status != http.StatusNoContent {
		t.Fatalf("POST overriding to DELETE with the current ETag: %d %s", r.status, r.body)
	}
	w := up.writesTo(path)
	if len(w) != 1 || w[0].method != http.MethodPost || w[0].header.Get("X-Http-Method-Override") != "DELETE" || w[0].header.Get("If-Match") != "" {
		t.Fatalf("forwarded %+v, want one POST with its override and without If-Match", w)
	}
	if _, ok := up.doc(path); ok {
		t.Fatal("the upstream did not delete")
	}

	// Handled as a PATCH: serialised with the resource's other writes, and
	// answered with the new ETag.
	path = "/override/patch"
	up.set(path, "v1", time.Now())
	e = wrGetETag(t, optional+path)
	held := make(chan struct{})
	release := make(chan struct{})
	up.mu.Lock()
	up.holdWrite = func(r *http.Request) error {
		if r.Method == http.MethodPost {
			close(held)
			<-release
		}
		return nil
	}
	up.mu.Unlock()
	done := make(chan wrResp, 1)
	go func() {
		r, err := wrSend(t.Context(), http.MethodPost, optional+path, strings.NewReader("+v2"), "X-HTTP-Method-Override: PATCH", "If-Match: "+e)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the POST never reached the upstream")
	}
	if n := wrLockedKeys(t); n != 1 {
		t.Errorf("%d keys locked while the overridden PATCH is upstream, want 1", n)
	}
	close(release)
	r = <-done
	up.mu.Lock()
	up.holdWrite = nil
	up.mu.Unlock()
	if r.status != http.StatusNoContent {
		t.Fatalf("POST overriding to PATCH: %d %s", r.status, r.body)
	}
	if cur := wrGetETag(t, optional+path); r.header.Get("ETag") != cur || cur == e {
		t.Errorf("POST overriding to PATCH answered ETag %q; current %q, old %q", r.header.Get("ETag"), cur, e)
	}

	// Fields that disagree leave the upstream to choose: refused.
	path = "/override/conflict"
	up.set(path, "v1", time.Now())
	r = wrDo(t, http.MethodPost, optional+path, "", "X-HTTP-Method-Override: PATCH", "X-HTTP-Method: DELETE", "If-Match: "+wrGetETag(t, optional+path))
	p := wrProblem(t, "conflicting overrides", r, http.StatusBadRequest)
	if p["header"] != "X-HTTP-Method" {
		t.Errorf("the 400 names %v, want X-HTTP-Method: %s", p["header"], r.body)
	}
	if w := up.writesTo(path); len(w) != 0 {
		t.Fatalf("conflicting overrides: %d writes forwarded", len(w))
	}
	// A POST whose override names no enforced method is not a write of
	// etag's: it passes through.
	r = wrDo(t, http.MethodPost, required+path, "", "X-HTTP-Method-Override: PURGE")
	if r.status != http.StatusMethodNotAllowed || len(up.writesTo(path)) != 1 {
		t.Errorf("POST overriding to PURGE: %d, %d writes; want it forwarded to the upstream's 405", r.status, len(up.writesTo(path)))
	}
	wrEventuallyUnlocked(t)
}
