package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

// cond is the outcome of one precondition: absent (or to be ignored), true
// or false. Keeping the three apart lets evaluate follow RFC 9110 §13.2.2
// literally.
type cond uint8

const (
	condNone cond = iota
	condTrue
	condFalse
)

// current is what the gateway knows of a resource's selected representation
// when it evaluates preconditions.
type current struct {
	exists       bool
	etag         hashing.Tag // zero Opaque when the representation has no ETag
	lastModified time.Time   // zero when unknown
	// digest is this gateway's hash of the body, quoted like an ETag, when
	// the body was read; it tells whether the representation is byte for
	// byte what a PUT sent, or with semantic, token for token under
	// json_ignore or json_only.
	digest   string
	semantic bool
}

// encodeSuffixes are the suffixes Caddy's encode handler appends to a strong
// ETag of a compressed response ("abc" becomes "abc-gzip").
var encodeSuffixes = [...]string{"-gzip", "-zstd", "-br", "-deflate"}

// tagIs reports whether a client's tag names the current tag, allowing for
// the suffix encode added to what the client received. strong selects strong
// comparison (If-Match) over weak (If-None-Match).
func tagIs(client, cur hashing.Tag, strong bool) bool {
	if strong && (client.Weak || cur.Weak) {
		return false
	}
	if client.Opaque == cur.Opaque {
		return true
	}
	c, o := client.Opaque, cur.Opaque
	if len(c) <= len(o) || len(o) < 2 || c[:len(o)-1] != o[:len(o)-1] {
		return false
	}
	rest := c[len(o)-1 : len(c)-1]
	for _, s := range encodeSuffixes {
		if rest == s {
			return true
		}
	}
	return false
}

// checkIfMatch evaluates If-Match (RFC 9110 §13.1.1) with strong comparison.
func checkIfMatch(values []string, cur current) (cond, error) {
	if len(values) == 0 {
		return condNone, nil
	}
	s := hashing.NewScanner(values)
	matched := false
	for s.Next() {
		if cur.exists && cur.etag.Opaque != "" && tagIs(s.Tag(), cur.etag, true) {
			matched = true
		}
	}
	if err := s.Err(); err != nil {
		return condNone, err
	}
	if s.Any() {
		return boolCond(cur.exists), nil
	}
	return boolCond(matched), nil
}

// checkIfNoneMatch evaluates If-None-Match (RFC 9110 §13.1.2) with weak
// comparison.
func checkIfNoneMatch(values []string, cur current) (cond, error) {
	if len(values) == 0 {
		return condNone, nil
	}
	s := hashing.NewScanner(values)
	matched := false
	for s.Next() {
		if cur.exists && cur.etag.Opaque != "" && tagIs(s.Tag(), cur.etag, false) {
			matched = true
		}
	}
	if err := s.Err(); err != nil {
		return condNone, err
	}
	if s.Any() {
		return boolCond(!cur.exists), nil
	}
	return boolCond(!matched), nil
}

// checkIfUnmodifiedSince evaluates If-Unmodified-Since (RFC 9110 §13.1.4).
// An invalid date or a representation without a modification date makes the
// field one to ignore.
func checkIfUnmodifiedSince(value string, cur current) cond {
	if value == "" || !cur.exists || cur.lastModified.IsZero() {
		return condNone
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return condNone
	}
	return boolCond(!cur.lastModified.Truncate(time.Second).After(t))
}

// checkIfModifiedSince evaluates If-Modified-Since (RFC 9110 §13.1.3): true
// means modified.
func checkIfModifiedSince(value string, cur current) cond {
	if value == "" || !cur.exists || cur.lastModified.IsZero() {
		return condNone
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return condNone
	}
	return boolCond(cur.lastModified.Truncate(time.Second).After(t))
}

func boolCond(b bool) cond {
	if b {
		return condTrue
	}
	return condFalse
}

// verdict is what precondition evaluation decides for a request.
type verdict struct {
	status int    // 0 to proceed, else 304 or 412
	header string // the field that decided a 304 or 412
}

// evaluate applies the preconditions of r to cur in the order of RFC 9110
// §13.2.2. A syntax error in an entity-tag list is returned with the name of
// the field.
func evaluate(r *http.Request, cur current) (verdict, error) {
	return evaluateHeader(r.Header, r.Method == http.MethodGet || r.Method == http.MethodHead, cur)
}

// evaluateHeader is evaluate for the fields h of a request that is safe
// (GET, HEAD) or not.
func evaluateHeader(h http.Header, safe bool, cur current) (verdict, error) {
	im, err := checkIfMatch(h["If-Match"], cur)
	if err != nil {
		return verdict{}, fieldError{"If-Match", err}
	}
	switch im {
	case condFalse:
		return verdict{http.StatusPreconditionFailed, "If-Match"}, nil
	case condNone:
		if checkIfUnmodifiedSince(first(h, "If-Unmodified-Since"), cur) == condFalse {
			return verdict{http.StatusPreconditionFailed, "If-Unmodified-Since"}, nil
		}
	}
	inm, err := checkIfNoneMatch(h["If-None-Match"], cur)
	if err != nil {
		return verdict{}, fieldError{"If-None-Match", err}
	}
	switch inm {
	case condFalse:
		if safe {
			return verdict{http.StatusNotModified, "If-None-Match"}, nil
		}
		return verdict{http.StatusPreconditionFailed, "If-None-Match"}, nil
	case condNone:
		if safe && checkIfModifiedSince(first(h, "If-Modified-Since"), cur) == condFalse {
			return verdict{http.StatusNotModified, "If-Modified-Since"}, nil
		}
	}
	return verdict{}, nil
}

// checkSyntax reports the first malformed entity-tag list in r, so that a
// bad request is refused before anything goes upstream.
func checkSyntax(r *http.Request) error {
	for _, name := range tagListFields {
		v := r.Header[name]
		if len(v) == 0 {
			continue
		}
		s := hashing.NewScanner(v)
		for s.Next() {
		}
		if s.Err() != nil {
			return fieldError{name, s.Err()}
		}
	}
	return nil
}

// fieldError names the request header whose value could not be parsed.
type fieldError struct {
	field string
	err   error
}

func (e fieldError) Error() string {
	return e.field + ": " + strings.TrimPrefix(e.err.Error(), hashing.ErrMalformed.Error()+": ")
}

func (e fieldError) Unwrap() error { return e.err }

// hasPreconditions reports whether r carries a precondition that guards a
// write: If-Match, If-None-Match or If-Unmodified-Since.
func hasPreconditions(h http.Header) bool {
	for _, f := range writeConditionals {
		if len(h[f]) > 0 {
			return true
		}
	}
	return false
}

// deletesNothing reports whether a DELETE whose If-Match lists entity-tags
// targets a resource that does not exist. RFC 9110 §13.2.1 has
// preconditions ignored when the answer without them would not be a 2xx,
// and a DELETE of nothing is a 404 (Box's API answers the same: found and
// no match, 412; not found, 404). If-Match: * keeps its 412.
func deletesNothing(method string, h http.Header, cur current) bool {
	if method != http.MethodDelete || cur.exists || len(h["If-Match"]) == 0 {
		return false
	}
	s := hashing.NewScanner(h["If-Match"])
	return s.Next()
}

// protected reports whether a write's preconditions are evaluated against
// the current representation, as require_precondition demands; if not, it
// names the field that was ignored ("" when there was none). RFC 9110
// §13.1.4 ignores an If-Unmodified-Since that is not an HTTP-date or whose
// representation has no modification date, and an If-None-Match that lists
// no entity-tag protects nothing. With cur nil, before the lookup, a valid
// date counts: the representation may have one.
func protected(h http.Header, cur *current) (ok bool, ignored string) {
	if len(h["If-Match"]) > 0 {
		return true, ""
	}
	if v := h["If-None-Match"]; len(v) > 0 {
		s := hashing.NewScanner(v)
		if s.Next() || s.Any() {
			return true, ""
		}
		ignored = "If-None-Match"
	}
	if v := first(h, "If-Unmodified-Since"); len(h["If-Unmodified-Since"]) > 0 {
		if _, err := http.ParseTime(v); err == nil && (cur == nil || cur.exists && !cur.lastModified.IsZero()) {
			return true, ""
		}
		if ignored == "" {
			ignored = "If-Unmodified-Since"
		}
	}
	return false, ignored
}

// first returns the first value of a header given in canonical form; unlike
// http.Header.Get it does not canonicalise the name on every call.
func first(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}
