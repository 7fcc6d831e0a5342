package hashing

import (
	"errors"
	"fmt"
	"strings"

	"github.com/etaggate/etaggate/internal/problem"
)

// Tag is one entity-tag. Opaque is the quoted part including its quotes,
// exactly as it appears on the wire, so "W/"x"" has Opaque `"x"`.
type Tag struct {
	Opaque string
	Weak   bool
}

// String formats t as it is sent in an ETag field.
func (t Tag) String() string {
	if t.Weak {
		return "W/" + t.Opaque
	}
	return t.Opaque
}

// ParseTag parses a single entity-tag, as an ETag response field carries.
func ParseTag(s string) (Tag, error) {
	s = strings.Trim(s, " \t")
	t, rest, err := scanTag(s)
	if err != nil {
		return Tag{}, err
	}
	if rest != "" {
		return Tag{}, fmt.Errorf("entity-tag %q: unexpected %q after the closing quote", problem.Clip(s), problem.Clip(rest))
	}
	return t, nil
}

// ErrMalformed is wrapped by every list-parsing error.
var ErrMalformed = errors.New("malformed entity-tag list")

// Scanner walks the entity-tags of an If-Match or If-None-Match field, which
// may arrive as several field lines. It does not allocate: the Tags it
// returns share memory with the field values.
//
//	s := hashing.NewScanner(r.Header.Values("If-Match"))
//	for s.Next() { use(s.Tag()) }
//	if s.Err() != nil { 400 }
type Scanner struct {
	values []string
	rest   string
	tag    Tag
	any    bool
	n      int
	err    error
}

// NewScanner returns a Scanner over the given field values.
func NewScanner(values []string) Scanner {
	return Scanner{values: values}
}

// Next advances to the next entity-tag; it returns false at the end of the
// list, after a "*", or on a syntax error (see Err).
func (s *Scanner) Next() bool {
	if s.err != nil || s.any {
		return false
	}
	for {
		// Skip empty list elements and whitespace: "#rule" recipients must
		// accept ", ," (RFC 9110 §5.6.1.2).
		s.rest = strings.TrimLeft(s.rest, " \t,")
		if s.rest == "" {
			if len(s.values) == 0 {
				return false
			}
			s.rest = s.values[0]
			s.values = s.values[1:]
			continue
		}
		break
	}
	if s.rest[0] == '*' {
		if s.n > 0 || strings.Trim(s.rest[1:], " \t,") != "" || s.anyLeft() {
			s.err = fmt.Errorf("%w: \"*\" must be the only member", ErrMalformed)
			return false
		}
		s.any = true
		s.rest = ""
		return false
	}
	t, rest, err := scanTag(s.rest)
	if err != nil {
		s.err = err
		return false
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest != "" && rest[0] != ',' {
		s.err = fmt.Errorf("%w: expected a comma after %s, found %q", ErrMalformed, problem.Clip(t.String()), problem.Clip(rest))
		return false
	}
	s.tag, s.rest = t, rest
	s.n++
	return true
}

// anyLeft reports whether a later field line holds a list member.
func (s *Scanner) anyLeft() bool {
	for _, v := range s.values {
		if strings.Trim(v, " \t,") != "" {
			return true
		}
	}
	return false
}

// Tag returns the entity-tag Next moved to.
func (s *Scanner) Tag() Tag { return s.tag }

// Any reports whether the field was "*". It is meaningful once Next has
// returned false.
func (s *Scanner) Any() bool { return s.any }

// Err returns the syntax error that stopped the scan, if any.
func (s *Scanner) Err() error { return s.err }

// scanTag reads one entity-tag from the start of s:
//
//	entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
//	etagc      = %x21 / %x23-7E / obs-text
func scanTag(s string) (Tag, string, error) {
	var t Tag
	in := s
	if strings.HasPrefix(s, "W/") {
		t.Weak = true
		s = s[2:]
	}
	if len(s) == 0 || s[0] != '"' {
		return Tag{}, "", fmt.Errorf("%w: %q is not a quoted entity-tag such as \"abc\" or W/\"abc\"", ErrMalformed, problem.Clip(in))
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			t.Opaque = s[:i+1]
			return t, s[i+1:], nil
		case c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80:
		default:
			return Tag{}, "", fmt.Errorf("%w: character %q is not allowed inside entity-tag %q", ErrMalformed, c, problem.Clip(in))
		}
	}
	return Tag{}, "", fmt.Errorf("%w: entity-tag %q has no closing quote", ErrMalformed, problem.Clip(in))
}
