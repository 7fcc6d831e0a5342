package hashing

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxSegment is the longest pointer segment, in bytes once unescaped. A
// member name is compared with the segments while the body streams by, so
// a name longer than the longest segment is known not to match without
// being kept whole.
const MaxSegment = 256

// Wildcard is the segment that matches every member of an object or every
// element of an array at its level: the one extension to RFC 6901.
const Wildcard = "*"

// Pointer is a parsed JSON Pointer (RFC 6901): the unescaped reference
// tokens from the root down. A segment equal to Wildcard matches any name
// or index.
type Pointer []string

// ErrPointer is wrapped by every error ParsePointer returns.
var ErrPointer = errors.New("invalid JSON pointer")

// ParsePointer parses s, such as "/items/*/updated_at" or "/a~1b" (the
// member "a/b"). The empty pointer is refused: it names the whole body,
// which can be neither left out of its own ETag nor be all of it twice.
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return nil, fmt.Errorf("%w %q: the empty pointer names the whole body; name members, such as /generated_at", ErrPointer, s)
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("%w %q: a pointer starts with \"/\", such as /generated_at", ErrPointer, s)
	}
	var p Pointer
	for seg := range strings.SplitSeq(s[1:], "/") {
		u, err := unescapeSegment(seg)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrPointer, s, err)
		}
		if !utf8.ValidString(u) {
			return nil, fmt.Errorf("%w %q: a segment is not valid UTF-8", ErrPointer, s)
		}
		if len(u) > MaxSegment {
			return nil, fmt.Errorf("%w %q: a segment is %d bytes long, more than %d", ErrPointer, s, len(u), MaxSegment)
		}
		p = append(p, u)
	}
	return p, nil
}

// unescapeSegment turns ~1 into "/" and ~0 into "~", in one left-to-right
// pass, so that "~01" is "~1" and not "/" (RFC 6901 §4).
func unescapeSegment(seg string) (string, error) {
	if strings.IndexByte(seg, '~') < 0 {
		return seg, nil
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(seg) || (seg[i+1] != '0' && seg[i+1] != '1') {
			return "", errors.New(`"~" must be followed by 0 (for "~") or 1 (for "/")`)
		}
		if seg[i+1] == '0' {
			b.WriteByte('~')
		} else {
			b.WriteByte('/')
		}
		i++
	}
	return b.String(), nil
}

// String returns p in its RFC 6901 form, escaped so that it parses back to p.
func (p Pointer) String() string {
	var b strings.Builder
	for _, seg := range p {
		b.WriteByte('/')
		for i := 0; i < len(seg); i++ {
			switch seg[i] {
			case '~':
				b.WriteString("~0")
			case '/':
				b.WriteString("~1")
			default:
				b.WriteByte(seg[i])
			}
		}
	}
	return b.String()
}
