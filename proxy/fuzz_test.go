package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

// fzLines turns a fuzzed string into a header's field lines: "" is an
// absent header, and "\n" separates lines.
func fzLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func fzMethod(b byte) string {
	return [...]string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete}[int(b)%5]
}

// tagList is a parsed entity-tag list, as the oracles see it.
type tagList struct {
	Any  bool
	Tags []hashing.Tag
}

// parseList collects every entity-tag of a field with hashing's Scanner.
func parseList(values []string) (tagList, error) {
	var l tagList
	s := hashing.NewScanner(values)
	for s.Next() {
		l.Tags = append(l.Tags, s.Tag())
	}
	if s.Err() != nil {
		return tagList{}, s.Err()
	}
	l.Any = s.Any()
	return l, nil
}

// refTagIs is tagIs written from its specification: equal opaque-tags, or
// the client's tag is the current one with a suffix Caddy's encode adds.
func refTagIs(client, cur hashing.Tag, strong bool) bool {
	if strong && (client.Weak || cur.Weak) {
		return false
	}
	if client.Opaque == cur.Opaque {
		return true
	}
	for _, s := range []string{"-gzip", "-zstd", "-br", "-deflate"} {
		if len(cur.Opaque) >= 2 && client.Opaque == cur.Opaque[:len(cur.Opaque)-1]+s+`"` {
			return true
		}
	}
	return false
}

// refEvaluate is RFC 9110 §13.2.2 written as plainly as possible on top
// of parseList, the oracle for evaluate.
func refEvaluate(method string, h http.Header, cur current) (status int, field string, errField string) {
	safe := method == http.MethodGet || method == http.MethodHead
	matches := func(l tagList, strong bool) bool {
		if !cur.exists || cur.etag.Opaque == "" {
			return false
		}
		for _, t := range l.Tags {
			if refTagIs(t, cur.etag, strong) {
				return true
			}
		}
		return false
	}
	date := func(name string) (time.Time, bool) {
		v := h.Get(name)
		if v == "" || !cur.exists || cur.lastModified.IsZero() {
			return time.Time{}, false
		}
		t, err := http.ParseTime(v)
		return t, err == nil
	}
	lm := cur.lastModified.Truncate(time.Second)

	if im := h["If-Match"]; len(im) > 0 {
		l, err := parseList(im)
		if err != nil {
			return 0, "", "If-Match"
		}
		if l.Any && !cur.exists || !l.Any && !matches(l, true) {
			return http.StatusPreconditionFailed, "If-Match", ""
		}
	} else if t, ok := date("If-Unmodified-Since"); ok && lm.After(t) {
		return http.StatusPreconditionFailed, "If-Unmodified-Since", ""
	}
	if inm := h["If-None-Match"]; len(inm) > 0 {
		l, err := parseList(inm)
		if err != nil {
			return 0, "", "If-None-Match"
		}
		if l.Any && cur.exists || !l.Any && matches(l, false) {
			if safe {
				return http.StatusNotModified, "If-None-Match", ""
			}
			return http.StatusPreconditionFailed, "If-None-Match", ""
		}
	} else if t, ok := date("If-Modified-Since"); ok && safe && !lm.After(t) {
		return http.StatusNotModified, "If-Modified-Since", ""
	}
	return 0, "", ""
}

func FuzzEvaluate(f *testing.F) {
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before, same, after := lm.Add(-time.Hour).Format(http.TimeFormat), lm.Format(http.TimeFormat), lm.Add(time.Hour).Format(http.TimeFormat)
	for _, s := range []struct {
		method            byte
		im, inm, ius, ims string
		exists            bool
		cur               string
		lm                int64
	}{
		{2, `"v1"`, "", "", "", true, `"v1"`, lm.Unix()},
		{2, `"v0"`, "", "", "", true, `"v1"`, lm.Unix()},
		{2, "*", "", "", "", false, "", 0},
		{2, `"a", "v1"`, "", "", "", true, `"v1"`, 0},
		{2, "\"a\"\n\"v1\"", "", "", "", true, `"v1"`, 0},
		{2, `W/"v1"`, "", "", "", true, `"v1"`, 0},
		{2, `"v1-gzip"`, "", "", "", true, `"v1"`, 0},
		{3, "", "*", "", "", true, `"v1"`, 0},
		{3, "", "*", "", "", false, "", 0},
		{3, "", `W/"v1", "x"`, "", "", true, `"v1"`, 0},
		{4, "", "", before, "", true, `"v1"`, lm.Unix()},
		{4, "", "", same, "", true, `"v1"`, lm.Unix()},
		{4, `"v1"`, "", before, "", true, `"v1"`, lm.Unix()},
		{0, "", `"v1"`, "", before, true, `"v1"`, lm.Unix()},
		{0, "", "", "", after, true, `"v1"`, lm.Unix()},
		{1, "", "", "", "garbage", true, `"v1"`, lm.Unix()},
		{2, "abc", "", "", "", true, `"v1"`, 0},
		{2, `"a" "b"`, `*, "x"`, "", "", true, `"v1"`, 0},
		{2, ", ,", "", "", "", true, `"v1"`, 0},
		{2, "*\n*", "", "", "", true, `"v1"`, 0},
		{2, `"unterminated`, "*", "", "", true, `W/"v1"`, 0},
	} {
		f.Add(s.method, s.im, s.inm, s.ius, s.ims, s.exists, s.cur, s.lm)
	}
	f.Fuzz(func(t *testing.T, mb byte, im, inm, ius, ims string, exists bool, curTag string, lmUnix int64) {
		method := fzMethod(mb)
		r := httptest.NewRequest(method, "http://gw/r", nil)
		r.Header = http.Header{}
		if v := fzLines(im); v != nil {
			r.Header["If-Match"] = v
		}
		if v := fzLines(inm); v != nil {
			r.Header["If-None-Match"] = v
		}
		if ius != "" {
			r.Header["If-Unmodified-Since"] = []string{ius}
		}
		if ims != "" {
			r.Header["If-Modified-Since"] = []string{ims}
		}
		cur := current{exists: exists}
		if exists {
			if tag, err := hashing.ParseTag(curTag); err == nil {
				cur.etag = tag
			}
			if lmUnix != 0 {
				cur.lastModified = time.Unix(lmUnix%(400*365*24*3600), 0).UTC()
			}
		}

		synErr := checkSyntax(r)
		_, imErr := parseList(r.Header["If-Match"])
		_, inmErr := parseList(r.Header["If-None-Match"])
		if (synErr != nil) != (imErr != nil || inmErr != nil) {
			t.Fatalf("checkSyntax = %v, but ParseList says If-Match %v, If-None-Match %v", synErr, imErr, inmErr)
		}
		if synErr != nil {
			var fe fieldError
			if !errors.As(synErr, &fe) || !errors.Is(synErr, hashing.ErrMalformed) {
				t.Fatalf("checkSyntax error %v names no field or is not ErrMalformed", synErr)
			}
			want := "If-Match"
			if imErr == nil {
				want = "If-None-Match"
			}
			if fe.field != want {
				t.Fatalf("checkSyntax names %s, want %s", fe.field, want)
			}
		}

		v, err := evaluate(r, cur)
		status, field, errField := refEvaluate(method, r.Header, cur)
		if err != nil {
			var fe fieldError
			if synErr == nil {
				t.Fatalf("evaluate failed with %v though checkSyntax passed", err)
			}
			if !errors.As(err, &fe) || fe.field != errField {
				t.Fatalf("evaluate error %v, want one naming %q", err, errField)
			}
			return
		}
		if errField != "" {
			t.Fatalf("evaluate = %+v, want a syntax error in %s", v, errField)
		}
		if v.status != status || v.header != field {
			t.Fatalf("evaluate(%s %q, %+v) = %+v, want %d %q", method, r.Header, cur, v, status, field)
		}

		// Invariants stated directly, independent of the oracle.
		safe := method == http.MethodGet || method == http.MethodHead
		if !safe && v.status == http.StatusNotModified {
			t.Fatalf("a %s got 304", method)
		}
		if v.status != 0 && len(r.Header[v.header]) == 0 {
			t.Fatalf("verdict %+v names a header the request does not carry", v)
		}
		if l, _ := parseList(r.Header["If-Match"]); l.Any {
			if failedIM := v.status == http.StatusPreconditionFailed && v.header == "If-Match"; failedIM == exists {
				t.Fatalf("If-Match: * with exists=%v gave %+v", exists, v)
			}
		}
		if l, _ := parseList(r.Header["If-None-Match"]); l.Any && len(r.Header["If-Match"]) == 0 && ius == "" && !safe {
			if (v.status == http.StatusPreconditionFailed) != exists {
				t.Fatalf("If-None-Match: * alone with exists=%v gave %+v", exists, v)
			}
		}
		if !hasPreconditions(r.Header) && !safe && v.status != 0 {
			t.Fatalf("a write without preconditions got %+v", v)
		}
	})
}

// refListsTags reports whether a field lists at least one entity-tag.
func refListsTags(values []string) bool {
	l, _ := parseList(values)
	return len(l.Tags) > 0
}

// refProtected is require_precondition's rule as the README states it: a
// write passes only with a precondition that is evaluated against cur.
func refProtected(h http.Header, cur current) bool {
	if len(h["If-Match"]) > 0 {
		return true
	}
	if l, _ := parseList(h["If-None-Match"]); l.Any || len(l.Tags) > 0 {
		return true
	}
	_, err := http.ParseTime(h.Get("If-Unmodified-Since"))
	return err == nil && cur.exists && !cur.lastModified.IsZero()
}

// FuzzServeWrite sends fuzzed preconditions through the whole write path
// and checks what reaches the rest of the route.
func FuzzServeWrite(f *testing.F) {
	const doc = "document"
	curTag := hashing.XXH3.Sum([]byte(doc))
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []struct {
		method       byte
		im, inm, ius string
		exists, req  bool
	}{
		{2, curTag, "", "", true, false},
		{3, curTag + `, "x"`, "", "", true, true},
		{4, `"x"`, "", "", true, false},
		{2, "*", "", "", false, false},
		{2, "", "*", "", false, true},
		{2, "", "*", "", true, false},
		{2, "", "", lm.Format(http.TimeFormat), true, false},
		{2, "", "", lm.Add(-time.Second).Format(http.TimeFormat), true, false},
		{2, "", "", "", true, true},
		{2, "", "", "", true, false},
		{2, "abc", "", "", true, false},
		{2, curTag, `"a",,"b`, "", true, false},
		{2, "", "", "garbage", true, true},
		{3, "", "", lm.Format(http.TimeFormat), false, true},
		{4, "", ", ,", "", true, true},
		{2, "", "\n", "", true, true},
		{4, curTag, "", "", false, false},
		{4, "*", "", "", false, false},
	} {
		f.Add(s.method, s.im, s.inm, s.ius, s.exists, s.req)
	}
	gateways := map[bool]*Middleware{}
	for _, req := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.RequirePrecondition = req
		m, err := New(cfg)
		if err != nil {
			f.Fatal(err)
		}
		defer m.Close()
		gateways[req] = m
	}
	f.Fuzz(func(t *testing.T, mb byte, im, inm, ius string, exists, require bool) {
		method := fzMethod(mb%3 + 2)
		var forwarded []*http.Request
		next := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			if r.Method != http.MethodGet {
				forwarded = append(forwarded, r)
				w.WriteHeader(http.StatusNoContent)
				return nil
			}
			if !exists {
				http.Error(w, "not found", http.StatusNotFound)
				return nil
			}
			w.Header().Set("Last-Modified", lm.Format(http.TimeFormat))
			_, _ = w.Write([]byte(doc))
			return nil
		})
		r := httptest.NewRequest(method, "http://gw/r", strings.NewReader("new"))
		if v := fzLines(im); v != nil {
			r.Header["If-Match"] = v
		}
		if v := fzLines(inm); v != nil {
			r.Header["If-None-Match"] = v
		}
		if ius != "" {
			r.Header["If-Unmodified-Since"] = []string{ius}
		}
		m := gateways[require]
		rec := httptest.NewRecorder()
		if err := m.ServeHTTP(rec, r, next); err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
		if n := m.LockedKeys(); n != 0 {
			t.Fatalf("LockedKeys = %d after the request", n)
		}

		_, imErr := parseList(r.Header["If-Match"])
		_, inmErr := parseList(r.Header["If-None-Match"])
		cur := current{}
		if exists {
			cur = current{exists: true, etag: hashing.Tag{Opaque: curTag}, lastModified: lm}
		}
		want, field, _ := refEvaluate(method, r.Header, cur)
		switch {
		case imErr != nil || inmErr != nil:
			want = http.StatusBadRequest
		case method == http.MethodDelete && !exists && refListsTags(r.Header["If-Match"]):
			want = http.StatusNotFound
		case require && !refProtected(r.Header, cur):
			want = http.StatusPreconditionRequired
		}
		if want == 0 {
			if rec.Code != http.StatusNoContent || len(forwarded) != 1 {
				t.Fatalf("%s %q: %d with %d forwarded, want it forwarded", method, r.Header, rec.Code, len(forwarded))
			}
			for _, f := range []string{"If-Match", "If-None-Match", "If-Unmodified-Since"} {
				if len(forwarded[0].Header[f]) > 0 {
					t.Fatalf("the forwarded %s carries %s", method, f)
				}
			}
			return
		}
		if rec.Code != want || len(forwarded) != 0 {
			t.Fatalf("%s %q (exists=%v): %d with %d forwarded, want %d (%s) and nothing forwarded", method, r.Header, exists, rec.Code, len(forwarded), want, field)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%d with Content-Type %q", rec.Code, ct)
		}
		if want == http.StatusPreconditionFailed {
			if got, wantTag := rec.Header().Get("ETag"), map[bool]string{true: curTag}[exists]; got != wantTag {
				t.Fatalf("412 ETag %q, want %q", got, wantTag)
			}
		}
	})
}
