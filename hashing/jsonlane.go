package hashing

import (
	"encoding/binary"
	"math/bits"
)

// lane reads, from p[i], a region that counts whole or not at all (the
// innermost open container has no member to match), for as long as its
// tokens end within p. It does what the general scanner does, but with
// the grammar in the code (one label per state) rather than in a state
// variable, and hands the region's bytes to the hash in runs between
// whitespace rather than token by token. Anything it does not expect,
// including a token cut by the end of p and any syntax error, it leaves
// at once to the general scanner, which reads it from its first byte.
func (h *JSONHasher) lane(p []byte, i int) int {
	frames := h.frames
	k := frames[len(frames)-1].keep
	object := frames[len(frames)-1].object
	n := len(p)
	run := i
	st := h.st
	var j int
	var closes bool
	switch st {
	case sValue:
		goto value
	case sFirstValue:
		goto firstValue
	case sFirstKey:
		goto firstKey
	case sKey:
		goto key
	case sColon:
		goto colon
	case sNext:
		goto next
	}
	goto leave

firstValue:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if st = sFirstValue; i == n {
		goto leave
	}
	if p[i] == ']' {
		closes = false
		goto close
	}
	goto valueHere
value:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if i == n {
		st = sValue
		goto leave
	}
valueHere:
	st = sValue
	switch byteClass[p[i]] {
	case cQuote:
		// plainRun's first word, inlined by hand: a call costs more than
		// a short string's word.
		if j = i + 1; j+8 <= n {
			if m := specials(binary.LittleEndian.Uint64(p[j:])); m != 0 {
				j += bits.TrailingZeros64(m) >> 3
			} else {
				j = plainRun(p, j+8)
			}
		} else {
			j = plainRun(p, j)
		}
		if j < n && p[j] == '"' {
			i = j + 1
		} else if end, ok := stringEnd(p, j); ok {
			i = end
		} else {
			goto leave
		}
		goto next
	case cDigit:
		// A plain integer is the usual number; anything else, or a
		// number at the end of p, goes the long way.
		for j = i + 1; j < n && isDigit(p[j]); j++ {
		}
		if j < n && p[j] == '.' && j+1 < n && isDigit(p[j+1]) {
			for j += 2; j < n && isDigit(p[j]); j++ {
			}
		}
		if j < n && p[j] != 'e' && p[j] != 'E' && p[j] != '.' && (p[i] != '0' || j == i+1 || p[i+1] == '.') {
			i = j
		} else if end, ok := scalarEnd(p, i); ok {
			i = end
		} else {
			goto leave
		}
		goto next
	case cScalar:
		if j = i + 4; j < n && p[i] == 't' && binary.LittleEndian.Uint32(p[i:]) == trueWord {
			i = j
			goto next
		}
		if j = i + 5; j < n && p[i] == 'f' && binary.LittleEndian.Uint32(p[i+1:]) == alseWord {
			i = j
			goto next
		}
		if end, ok := scalarEnd(p, i); ok {
			i = end
			goto next
		}
		goto leave
	case cOpen:
		if len(frames) == maxDepth {
			goto leave
		}
		object = p[i] == '{'
		if len(frames) < cap(frames) {
			frames = frames[:len(frames)+1]
			frames[len(frames)-1] = frame{keep: k, object: object}
		} else {
			frames = append(frames, frame{keep: k, object: object})
		}
		i++
		if object {
			goto firstKey
		}
		goto firstValue
	}
	goto leave

firstKey:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if st = sFirstKey; i == n {
		goto leave
	}
	if p[i] == '}' {
		closes = true
		goto close
	}
	goto keyHere
key:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if st = sKey; i == n {
		goto leave
	}
keyHere:
	st = sKey
	if p[i] != '"' {
		goto leave
	}
	if j = i + 1; j+16 <= n {
		if m := specials(binary.LittleEndian.Uint64(p[j:])); m != 0 {
			j += bits.TrailingZeros64(m) >> 3
		} else if m := specials(binary.LittleEndian.Uint64(p[j+8:])); m != 0 {
			j += 8 + bits.TrailingZeros64(m)>>3 // names such as "updated_at"
		} else {
			j = plainRun(p, j+16)
		}
	} else {
		j = plainRun(p, j)
	}
	if j < n && p[j] == '"' {
		i = j + 1
	} else if end, ok := stringEnd(p, j); ok {
		i = end
	} else {
		goto leave
	}
colon:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if st = sColon; i == n || p[i] != ':' {
		goto leave
	}
	i++
	goto value

next:
	if i < n && isSpace(p[i]) {
		i, run = h.spaces(k, p, i, run)
	}
	if st = sNext; i == n {
		goto leave
	}
	switch p[i] {
	case ',':
		i++
		if object {
			goto key
		}
		goto value
	case '}':
		closes = true
	case ']':
		closes = false
	default:
		goto leave
	}
	if closes != object {
		goto leave
	}
close:
	frames = frames[:len(frames)-1]
	i++
	st = sNext
	if len(frames) == 0 || frames[len(frames)-1].keep == keepSome {
		goto leave
	}
	object = frames[len(frames)-1].object
	goto next

leave:
	h.frames = frames
	h.emitRun(k, p[run:i])
	h.st = st
	return i
}

// spaces emits the run before the whitespace at p[i] and skips it.
func (h *JSONHasher) spaces(k keep, p []byte, i, run int) (int, int) {
	h.emitRun(k, p[run:i])
	for i++; i < len(p) && isSpace(p[i]); i++ {
	}
	return i, i
}

// Byte classes of the lane.
const (
	cOther uint8 = iota
	cSpace
	cQuote
	cColon
	cComma
	cOpen
	cClose
	cDigit  // 0-9
	cScalar // '-', t, f, n: the rest of the scalars
)

var byteClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r" {
		t[c] = cSpace
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	for _, c := range "-tfn" {
		t[c] = cScalar
	}
	t['"'], t[':'], t[','] = cQuote, cColon, cComma
	t['{'], t['['], t['}'], t[']'] = cOpen, cOpen, cClose, cClose
	return t
}()

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
		return i + 4, len(p)-i >= 4 && binary.LittleEndian.Uint32(p[i:]) == trueWord
	case 'f':
		return i + 5, len(p)-i >= 5 && binary.LittleEndian.Uint32(p[i+1:]) == alseWord
	case 'n':
		return i + 4, len(p)-i >= 4 && binary.LittleEndian.Uint32(p[i:]) == nullWord
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

// The literals as little-endian words ("false" without its f).
var (
	trueWord = binary.LittleEndian.Uint32([]byte("true"))
	alseWord = binary.LittleEndian.Uint32([]byte("alse"))
	nullWord = binary.LittleEndian.Uint32([]byte("null"))
)

func skipSpace(p []byte, i int) int {
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	return i
}

// plainRun returns the index of the first byte from p[i] that ends a run
// of plain string bytes (a quote, a backslash or a control character), or
// len(p). It tests eight bytes at a time and takes the first special
// byte's place from the lowest bit set, so a short string costs one word
// and no loop whose exit is mispredicted.
func plainRun(p []byte, i int) int {
	for ; i+8 <= len(p); i += 8 {
		x := binary.LittleEndian.Uint64(p[i:])
		if m := specials(x); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(p) && strPlain[p[i]] {
		i++
	}
	return i
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specials sets the high bit of every byte of x that is a quote, a
// backslash or below 0x20. The lowest bit set is exact; the subtractions'
// borrows may set bits above a true one, which do not matter.
func specials(x uint64) uint64 {
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return (((quote - ones) &^ quote) | ((backslash - ones) &^ backslash) | ((x - ones*0x20) &^ x)) & highs
}
