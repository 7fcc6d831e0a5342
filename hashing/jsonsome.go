package hashing

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// some reads, from p[i], the members or elements of a container whose
// children are matched (keepSome), for as long as they are simple: names
// and scalars that end within p. Each member's fate is settled once its
// value has begun, so a kept member goes to the hash in one piece and a
// left-out one costs nothing but its scanning. It leaves at a container
// value, which the general scanner starts (it decides and pushes it), when
// the container closes onto one that is not matched, and at anything it
// does not expect, leaving the general scanner the state it would have
// reached.
func (h *JSONHasher) some(p []byte, i int) int {
	n := len(p)
	f := &h.frames[len(h.frames)-1]
	st := h.st
	var keyStart, colon, valStart, end int
	var next int32
	var ok, plain bool
	switch st {
	case sFirstKey:
		goto firstKey
	case sKey:
		goto key
	case sFirstValue:
		goto firstValue
	case sValue:
		if f.object {
			goto leave // a member's value: the general scanner settles the member
		}
		goto value
	case sNext:
		goto next
	}
	goto leave

firstKey:
	i = skipSpace(p, i)
	if st = sFirstKey; i < n && p[i] == '}' {
		goto close
	}
	goto keyHere
key:
	i = skipSpace(p, i)
	st = sKey
keyHere:
	if i == n || p[i] != '"' {
		goto leave
	}
	keyStart = i
	if i, plain, ok = nameEnd(p, i+1); !ok {
		i = keyStart
		goto leave
	}
	if plain {
		next = h.matchPlain(p[keyStart+1 : i-1])
	} else {
		next = h.matchName(p[keyStart+1 : i-1])
	}
	if colon = skipSpace(p, i); colon == n || p[colon] != ':' {
		h.pendName(p[keyStart:i], next)
		i, st = colon, sColon
		goto leave
	}
	valStart = skipSpace(p, colon+1)
	if valStart == n || p[valStart] == '{' || p[valStart] == '[' {
		h.pendName(p[keyStart:i], next)
		h.emitByte(':', true)
		i, st = valStart, sValue
		goto leave
	}
	if end, ok = valueEnd(p, valStart); !ok {
		h.pendName(p[keyStart:i], next)
		h.emitByte(':', true)
		i, st = valStart, sValue
		goto leave
	}
	h.member(f, next, p, keyStart, i, colon, valStart, end)
	i = end
	goto next

firstValue:
	i = skipSpace(p, i)
	if st = sFirstValue; i < n && p[i] == ']' {
		goto close
	}
	goto valueHere
value:
	i = skipSpace(p, i)
	st = sValue
valueHere:
	if i == n || p[i] == '{' || p[i] == '[' {
		goto leave
	}
	if end, ok = valueEnd(p, i); !ok {
		goto leave
	}
	h.element(f, p[i:end])
	i = end
	goto next

next:
	i = skipSpace(p, i)
	if st = sNext; i == n {
		goto leave
	}
	switch p[i] {
	case ',':
		h.emitByte(',', false)
		i++
		if f.object {
			goto key
		}
		goto value
	case '}':
		if !f.object {
			goto leave
		}
	case ']':
		if f.object {
			goto leave
		}
	default:
		goto leave
	}
close:
	h.emitByte(p[i], true)
	h.frames = h.frames[:len(h.frames)-1]
	i++
	st = sNext
	if len(h.frames) == 0 || h.frames[len(h.frames)-1].keep != keepSome {
		goto leave
	}
	f = &h.frames[len(h.frames)-1]
	goto next

leave:
	h.st = st
	return i
}

// pendName starts a member whose fate the general scanner settles: as
// beginKey and endString would have left it.
func (h *JSONHasher) pendName(name []byte, next int32) {
	f := &h.frames[len(h.frames)-1]
	h.out.mark = len(h.out.buf)
	if f.emitted {
		h.out.buf = append(h.out.buf, ',')
	}
	h.tokOut = true
	h.emit(name)
	h.next = next
}

// member settles a member with a scalar value: name p[key:keyEnd], colon
// at p[colon], value p[val:end].
func (h *JSONHasher) member(f *frame, next int32, p []byte, key, keyEnd, colon, val, end int) {
	k, _ := h.rule(next, false)
	compact := colon == keyEnd && val == colon+1
	if k != keepNone {
		if f.emitted {
			h.out.buf = append(h.out.buf, ',')
		}
		f.emitted = true
		if compact {
			h.out.buf = append(h.out.buf, p[key:end]...)
		} else {
			h.out.buf = append(append(append(h.out.buf, p[key:keyEnd]...), ':'), p[val:end]...)
		}
	}
	if h.only {
		if compact {
			h.whole.buf = append(h.whole.buf, p[key:end]...)
		} else {
			h.whole.buf = append(append(append(h.whole.buf, p[key:keyEnd]...), ':'), p[val:end]...)
		}
	}
}

// element settles an array element that is a scalar.
func (h *JSONHasher) element(f *frame, v []byte) {
	k, _ := h.rule(h.s.element(f.state, f.index), false)
	f.index++
	if k != keepNone {
		if f.emitted {
			h.out.buf = append(h.out.buf, ',')
		}
		f.emitted = true
		h.out.buf = append(h.out.buf, v...)
	}
	if h.only {
		h.whole.buf = append(h.whole.buf, v...)
	}
}

// nameEnd is stringEnd for a member name; plain says it has neither
// escapes nor bytes outside ASCII, so it compares as it is written.
func nameEnd(p []byte, i int) (end int, plain, ok bool) {
	if i+8 <= len(p) {
		x := binary.LittleEndian.Uint64(p[i:])
		if m := specials(x); m != 0 {
			j := i + bits.TrailingZeros64(m)/8
			if p[j] == '"' {
				before := x & (1<<(8*(j-i)) - 1) // the name's bytes
				return j + 1, before&highs == 0, true
			}
		}
	}
	var high byte
	for j := i; j < len(p); j++ {
		c := p[j]
		if c == '"' {
			return j + 1, high < utf8.RuneSelf, true
		}
		if c == '\\' {
			end, ok = stringEnd(p, j)
			return end, false, ok
		}
		if c < 0x20 {
			return 0, false, false
		}
		high |= c
	}
	return 0, false, false
}

// valueEnd returns the index after the string, number or literal that
// starts at p[i], and false when it is invalid or may go on past p.
func valueEnd(p []byte, i int) (int, bool) {
	if p[i] == '"' {
		return stringEnd(p, i+1)
	}
	return scalarEnd(p, i)
}
