package hashing

import (
	"unicode/utf16"
	"unicode/utf8"
)

// keyLimit is the longest escaped name worth gathering: every escape
// stands for at least one byte, so a longer name is longer than any
// segment once unescaped.
func (s *Semantic) keyLimit() int { return s.keyMax }

// gather adds a piece of a name that spans chunks.
func (h *JSONHasher) gather(b []byte) {
	h.keySpilled = true
	if h.keyLong {
		return
	}
	if len(h.key)+len(b) > h.s.keyLimit() {
		h.keyLong = true
		return
	}
	h.key = append(h.key, b...)
}

// matchName returns the state the member name raw (as written, without
// its quotes) leads to from the innermost object's state.
func (h *JSONHasher) matchName(raw []byte) int32 {
	state := h.frames[len(h.frames)-1].state
	if h.keyLong || len(raw) > h.s.keyLimit() {
		return h.s.states[state].other
	}
	return h.matchRaw(state, raw)
}

// matchPlain is matchName for a name known to hold neither escapes nor
// bytes outside ASCII, as nameEnd tells.
func (h *JSONHasher) matchPlain(raw []byte) int32 {
	return h.s.member(h.frames[len(h.frames)-1].state, raw)
}

func (h *JSONHasher) matchRaw(state int32, raw []byte) int32 {
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			var ok bool
			h.name, ok = unescapeName(h.name[:0], raw, h.s.maxLit)
			if !ok {
				return h.s.states[state].other
			}
			return h.s.member(state, h.name)
		}
	}
	return h.s.member(state, raw)
}

// unescapeName appends the value of the validated string contents raw to
// dst as encoding/json decodes it: escapes resolved, surrogate pairs
// joined, and invalid UTF-8 or lone surrogates replaced by U+FFFD. It stops
// with ok false once the value is longer than limit.
func unescapeName(dst, raw []byte, limit int) ([]byte, bool) {
	for i := 0; i < len(raw); {
		if len(dst) > limit {
			return dst, false
		}
		c := raw[i]
		switch {
		case c == '\\' && raw[i+1] == 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 = utf16.DecodeRune(r, hex4(raw[i+2:])); r2 != utf8.RuneError {
						i += 6
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		case c == '\\':
			dst = append(dst, unescapeByte(raw[i+1]))
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst, len(dst) <= limit
}

func unescapeByte(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // '"', '\\', '/'
}

// hex4 reads the four hex digits of a validated \u escape.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
