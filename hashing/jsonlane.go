package hashing

// lane reads, from p[i], a region that counts whole or not at all (the
// innermost open container has no member to match), for as long as its
// tokens end within p. It does what the general scanner does, in one
// loop, and hands the region's bytes to the hash in runs between
// whitespace rather than token by token. Anything it does not expect,
// including a token cut by the end of p and any syntax error, it leaves
// at once to the general scanner, which reads it from its first byte.
func (h *JSONHasher) lane(p []byte, i int) int {
	f := &h.frames[len(h.frames)-1]
	k := f.keep
	st := h.st
	run := i
	for i < len(p) {
		c := p[i]
		switch {
		case isSpace(c):
			h.emitRun(k, p[run:i])
			for i++; i < len(p) && isSpace(p[i]); i++ {
			}
			run = i
			continue
		case c == '"':
			if st == sColon || st == sNext {
				goto leave
			}
			end, ok := stringEnd(p, i+1)
			if !ok {
				goto leave
			}
			i = end
			if st == sFirstKey || st == sKey {
				st = sColon
			} else {
				st = sNext
			}
			continue
		case c == ':':
			if st != sColon {
				goto leave
			}
			st = sValue
		case c == ',':
			if st != sNext {
				goto leave
			}
			st = sValue
			if f.object {
				st = sKey
			}
		case c == '{' || c == '[':
			if (st != sValue && st != sFirstValue) || len(h.frames) == maxDepth {
				goto leave
			}
			h.frames = append(h.frames, frame{keep: k, object: c == '{'})
			f = &h.frames[len(h.frames)-1]
			st = sFirstValue
			if c == '{' {
				st = sFirstKey
			}
		case c == '}' || c == ']':
			object := c == '}'
			if f.object != object || !(st == sNext || (object && st == sFirstKey) || (!object && st == sFirstValue)) {
				goto leave
			}
			h.frames = h.frames[:len(h.frames)-1]
			st = sNext
			i++
			if len(h.frames) == 0 || h.frames[len(h.frames)-1].keep == keepSome {
				goto leave
			}
			f = &h.frames[len(h.frames)-1]
			continue
		default:
			if st != sValue && st != sFirstValue {
				goto leave
			}
			end, ok := scalarEnd(p, i)
			if !ok {
				goto leave
			}
			i = end
			st = sNext
			continue
		}
		i++
	}
leave:
	h.emitRun(k, p[run:i])
	h.st = st
	return i
}

// emitRun adds bytes of a region kept as k to the streams they belong to.
// No member is pending in such a region, so long runs go to the hash
// directly.
func (h *JSONHasher) emitRun(k keep, b []byte) {
	if len(b) == 0 {
		return
	}
	if k == keepAll {
		h.out.add(b)
	}
	if h.only {
		h.whole.add(b)
	}
}

// add appends b, or writes it straight to the hash when it is long; only
// when no member is pending.
func (k *sink) add(b []byte) {
	if len(b) < sinkSize {
		k.buf = append(k.buf, b...)
		if len(k.buf) >= sinkSize {
			k.flush()
		}
		return
	}
	k.flush()
	_, _ = k.h.Write(b)
}

// stringEnd returns the index after the closing quote of the string whose
// contents start at p[i], and false when the string is invalid or does
// not end within p.
func stringEnd(p []byte, i int) (int, bool) {
	for i < len(p) {
		i = plainRun(p, i)
		if i == len(p) {
			break
		}
		c := p[i]
		if strPlain[c] {
			i++
			continue
		}
		switch c {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 == len(p) {
				return 0, false
			}
			switch p[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(p) || !isHex(p[i+2]) || !isHex(p[i+3]) || !isHex(p[i+4]) || !isHex(p[i+5]) {
					return 0, false
				}
				i += 6
			default:
				return 0, false
			}
		default:
			return 0, false
		}
	}
	return 0, false
}

// scalarEnd returns the index after the number or literal starting at
// p[i], and false when it is invalid or p ends before a byte that shows
// the token has ended.
func scalarEnd(p []byte, i int) (int, bool) {
	switch p[i] {
	case 't':
		return literalEnd(p, i, "true")
	case 'f':
		return literalEnd(p, i, "false")
	case 'n':
		return literalEnd(p, i, "null")
	}
	j := i
	if p[j] == '-' {
		j++
	}
	switch {
	case j == len(p):
		return 0, false
	case p[j] == '0':
		j++
	case '1' <= p[j] && p[j] <= '9':
		for j++; j < len(p) && isDigit(p[j]); j++ {
		}
	default:
		return 0, false
	}
	if j < len(p) && p[j] == '.' {
		if j++; j == len(p) || !isDigit(p[j]) {
			return 0, false
		}
		for j++; j < len(p) && isDigit(p[j]); j++ {
		}
	}
	if j < len(p) && (p[j] == 'e' || p[j] == 'E') {
		if j++; j < len(p) && (p[j] == '+' || p[j] == '-') {
			j++
		}
		if j == len(p) || !isDigit(p[j]) {
			return 0, false
		}
		for j++; j < len(p) && isDigit(p[j]); j++ {
		}
	}
	return j, j < len(p)
}

func literalEnd(p []byte, i int, lit string) (int, bool) {
	if len(p)-i < len(lit) || string(p[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// members reads, from the opening quote of a name at p[i], the members of
// an object whose names are matched, for as long as they are simple: a
// name, a colon and a scalar that all end within p. It stops at a
// container value (the lane or the general scanner reads it) and at
// anything else, leaving the general scanner in the state it would have
// reached.
func (h *JSONHasher) members(p []byte, i int) int {
	for {
		h.beginKey(i)
		end, ok := stringEnd(p, i+1)
		if !ok {
			return i + 1
		}
		h.endString(p, end-1)
		if i = skipSpace(p, end); i == len(p) || p[i] != ':' {
			return i
		}
		h.emitByte(':', true)
		h.st = sValue
		if i = skipSpace(p, i+1); i == len(p) || p[i] == '{' || p[i] == '[' {
			return i
		}
		if i = h.beginValue(p, i); h.bad || h.st != sNext {
			return i
		}
		if i = skipSpace(p, i); i == len(p) || p[i] != ',' {
			return i
		}
		h.emitByte(',', false)
		h.st = sKey
		if i = skipSpace(p, i+1); i == len(p) || p[i] != '"' {
			return i
		}
	}
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	return i
}

// plainRun returns the index of the first byte from p[i] that ends a run
// of plain string bytes (a quote, a backslash or a control character), or
// len(p). (Testing eight bytes at a time was slower on API bodies, whose
// strings are short.)
func plainRun(p []byte, i int) int {
	for i < len(p) && strPlain[p[i]] {
		i++
	}
	return i
}
