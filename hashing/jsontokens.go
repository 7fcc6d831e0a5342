package hashing

// strPlain marks the bytes that may appear in a string as they are.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString reads string bytes up to the closing quote; the opening
// quote was read by the caller.
func (h *JSONHasher) scanString(p []byte, i int) int {
	i = plainRun(p, i)
	if i == len(p) {
		return i
	}
	switch p[i] {
	case '"':
		h.endString(p, i)
		return i + 1
	case '\\':
		h.st = sEscape
		return i + 1
	}
	return h.fail(p, i, "control character in a string")
}

// endString ends the string whose closing quote is p[i].
func (h *JSONHasher) endString(p []byte, i int) {
	h.emit(p[h.tokStart : i+1])
	if !h.inKey {
		h.st = sNext
		return
	}
	h.inKey, h.st = false, sColon
	if h.keyWant {
		h.keyWant = false
		raw := p[h.keyFrom:i]
		if h.keySpilled {
			h.gather(raw)
			raw = h.key
		}
		h.next = h.matchName(raw)
	}
}

// scanEscape reads the rest of a backslash escape.
func (h *JSONHasher) scanEscape(p []byte, i int) int {
	if h.st == sEscape {
		switch p[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			h.st = sString
		case 'u':
			h.st, h.hexLeft = sHex, 4
		default:
			return h.fail(p, i, "invalid escape in a string")
		}
		return i + 1
	}
	for ; h.hexLeft > 0 && i < len(p); i++ {
		if !isHex(p[i]) {
			return h.fail(p, i, "invalid \\u escape in a string")
		}
		h.hexLeft--
	}
	if h.hexLeft == 0 {
		h.st = sString
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber reads number bytes; the number ends at the first byte that
// cannot continue it, which is then read as structure.
func (h *JSONHasher) scanNumber(p []byte, i int) int {
	for i < len(p) {
		c := p[i]
		switch h.num {
		case nInt, nFrac, nExp:
			if isDigit(c) {
				i++
				continue
			}
			if h.num != nExp && (c == 'e' || c == 'E') {
				h.num = nE
			} else if h.num == nInt && c == '.' {
				h.num = nDot
			} else {
				return h.endNumber(p, i)
			}
		case nMinus:
			switch {
			case c == '0':
				h.num = nZero
			case isDigit(c):
				h.num = nInt
			default:
				return h.fail(p, i, "expected a digit after '-'")
			}
		case nZero:
			switch c {
			case '.':
				h.num = nDot
			case 'e', 'E':
				h.num = nE
			default:
				return h.endNumber(p, i)
			}
		case nDot:
			if !isDigit(c) {
				return h.fail(p, i, "expected a digit after '.'")
			}
			h.num = nFrac
		case nE:
			switch {
			case c == '+' || c == '-':
				h.num = nSign
			case isDigit(c):
				h.num = nExp
			default:
				return h.fail(p, i, "expected a digit in the exponent")
			}
		case nSign:
			if !isDigit(c) {
				return h.fail(p, i, "expected a digit in the exponent")
			}
			h.num = nExp
		}
		i++
	}
	return i
}

func (h *JSONHasher) endNumber(p []byte, i int) int {
	h.emit(p[h.tokStart:i])
	h.st = sNext
	return i
}

// complete reports whether a number may end in state n.
func (n numState) complete() bool { return n == nZero || n == nInt || n == nFrac || n == nExp }

// scanLiteral reads the rest of true, false or null.
func (h *JSONHasher) scanLiteral(p []byte, i int) int {
	for len(h.lit) > 0 && i < len(p) {
		if p[i] != h.lit[0] {
			return h.fail(p, i, "invalid literal")
		}
		h.lit = h.lit[1:]
		i++
	}
	if len(h.lit) == 0 {
		h.emit(p[h.tokStart:i])
		h.st = sNext
	}
	return i
}
