package hashing

import (
	"fmt"
)

// sinkSize is how much of the token stream is gathered before it is handed
// to the hash function, which is fastest on long writes.
const sinkSize = 8 << 10

// maxDepth is encoding/json's nesting limit, so that a body is JSON here
// exactly when json.Valid says so.
const maxDepth = 10000

// JSONHasher hashes a JSON body's token stream under a Semantic rule as the
// body is written to it, in pieces of any size, in one pass and without
// allocating. What it hashes is the body in compact form (no insignificant
// whitespace) with the json_ignore members left out, or with only the
// json_only members and the objects and arrays on the way to them. Tokens
// are hashed as written: a string spelt with other escapes is another
// string.
//
// Write never fails; Valid says afterwards whether the body was one JSON
// value, and only then is AppendETag meaningful. It implements Hasher. It
// is not safe for concurrent use.
type JSONHasher struct {
	s     *Semantic
	only  bool // s.only, at hand
	out   sink // the filtered token stream
	whole sink // json_only: the whole token stream, used when nothing listed was present

	frames  []frame
	st      scanState
	num     numState
	lit     string // the rest of the literal being read
	hexLeft int8   // hex digits left in a \u escape

	tokStart int  // where the current token's unemitted bytes start in this chunk
	tokOut   bool // the current token goes to out
	inKey    bool // the current string is a member name
	keyWant  bool // the current name decides the member's fate: gather it
	keyFrom  int  // where the name's ungathered bytes start in this chunk
	// key holds a name that spans chunks (keySpilled), up to a length
	// past which it cannot match (keyLong).
	key        []byte
	keySpilled bool
	keyLong    bool
	name       []byte // a name with escapes, unescaped
	next       int32  // the match state of the member whose name was just read
	matched    int    // json_only: listed values seen

	off    int64 // bytes written before the current chunk
	bad    bool
	badOff int64
	badWhy string
}

// sink gathers bytes for a hash. mark is where the member being read
// started, while it is not known yet whether the member counts; -1 when
// none is pending.
type sink struct {
	h    Hasher
	buf  []byte
	mark int
}

func (k *sink) reset() {
	k.h.Reset()
	k.buf = k.buf[:0]
	k.mark = -1
}

// flush hands the sink's settled bytes to the hash.
func (k *sink) flush() {
	switch {
	case k.mark < 0:
		_, _ = k.h.Write(k.buf)
		k.buf = k.buf[:0]
	case k.mark > 0:
		_, _ = k.h.Write(k.buf[:k.mark])
		k.buf = k.buf[:copy(k.buf, k.buf[k.mark:])]
		k.mark = 0
	}
}

// keep says which of a value counts.
type keep uint8

const (
	keepNone keep = iota // left out
	keepAll              // in, as written
	keepSome             // a container whose children are matched one by one
)

// frame is an open object or array.
type frame struct {
	state   int32 // keepSome: the container's match state
	index   int   // keepSome arrays: the next element's index
	keep    keep
	object  bool
	emitted bool // keepSome: a child went to out, so the next needs a comma
}

type scanState uint8

const (
	sValue      scanState = iota // a value
	sFirstValue                  // after '[': a value or ']'
	sFirstKey                    // after '{': a name or '}'
	sKey                         // after ',' in an object: a name
	sColon                       // after a name
	sNext                        // after a value: ',', a closing bracket, or the end
	sString
	sEscape
	sHex
	sNumber
	sLiteral
)

type numState uint8

const (
	nMinus numState = iota // after '-'
	nZero                  // a leading 0
	nInt                   // integer digits
	nDot                   // after '.'
	nFrac                  // fraction digits
	nE                     // after 'e'
	nSign                  // after the exponent's sign
	nExp                   // exponent digits
)

// Reset forgets everything written.
func (h *JSONHasher) Reset() {
	h.out.reset()
	if h.s.only {
		h.whole.reset()
	}
	*h = JSONHasher{s: h.s, only: h.s.only, out: h.out, whole: h.whole, frames: h.frames[:0], key: h.key[:0], name: h.name[:0]}
}

// Valid reports whether what was written is exactly one JSON value.
func (h *JSONHasher) Valid() bool {
	if h.bad || len(h.frames) > 0 {
		return false
	}
	return h.st == sNext || (h.st == sNumber && h.num.complete())
}

// Err says why what was written is not JSON, or nil when it is.
func (h *JSONHasher) Err() error {
	switch {
	case h.Valid():
		return nil
	case h.bad:
		return fmt.Errorf("not JSON: %s at byte %d", h.badWhy, h.badOff)
	case len(h.frames) == 0 && h.st == sValue:
		return fmt.Errorf("not JSON: no value in %d bytes", h.off)
	}
	return fmt.Errorf("not JSON: the body ends inside a value after %d bytes", h.off)
}

// AppendETag appends the quoted entity-tag of the token stream; with
// json_only and none of the listed members present, that of the whole
// body's tokens.
func (h *JSONHasher) AppendETag(dst []byte) []byte {
	h.out.mark = -1
	h.out.flush()
	if h.s.only && h.matched == 0 {
		h.whole.flush()
		return h.whole.h.AppendETag(dst)
	}
	return h.out.h.AppendETag(dst)
}

// Write adds p to the body. It never fails; a body that is not JSON is
// noted, and the rest of it ignored.
func (h *JSONHasher) Write(p []byte) (int, error) {
	if h.bad {
		return len(p), nil
	}
	h.tokStart, h.keyFrom = 0, 0
	for i := 0; i < len(p); {
		switch h.st {
		case sString:
			i = h.scanString(p, i)
		case sEscape, sHex:
			i = h.scanEscape(p, i)
		case sNumber:
			i = h.scanNumber(p, i)
		case sLiteral:
			i = h.scanLiteral(p, i)
		default:
			if len(h.frames) > 0 {
				var j int
				if h.frames[len(h.frames)-1].keep == keepSome {
					j = h.some(p, i)
				} else {
					j = h.lane(p, i)
				}
				if j > i {
					i = j
					continue
				}
			}
			i = h.scanStructure(p, i)
		}
	}
	if !h.bad {
		h.endChunk(p)
	}
	h.off += int64(len(p))
	return len(p), nil
}

// endChunk emits the part of a token that continues in the next chunk.
func (h *JSONHasher) endChunk(p []byte) {
	switch h.st {
	case sString, sEscape, sHex, sNumber, sLiteral:
		h.emit(p[h.tokStart:])
		if h.keyWant {
			h.gather(p[h.keyFrom:])
		}
	}
	if len(h.out.buf) >= sinkSize {
		h.out.flush()
	}
	if h.s.only && len(h.whole.buf) >= sinkSize {
		h.whole.flush()
	}
}

func (h *JSONHasher) fail(p []byte, i int, why string) int {
	h.bad, h.badOff, h.badWhy = true, h.off+int64(i), why
	return len(p)
}

// emit adds token bytes to the streams they belong to.
func (h *JSONHasher) emit(b []byte) {
	if h.tokOut {
		h.out.buf = append(h.out.buf, b...)
	}
	if h.only {
		h.whole.buf = append(h.whole.buf, b...)
	}
}

func (h *JSONHasher) emitByte(c byte, out bool) {
	if out {
		h.out.buf = append(h.out.buf, c)
	}
	if h.only {
		h.whole.buf = append(h.whole.buf, c)
	}
}

func isSpace(c byte) bool { return c <= ' ' && (c == ' ' || c == '\n' || c == '\t' || c == '\r') }

// scanStructure reads whitespace and the structural byte that follows it.
func (h *JSONHasher) scanStructure(p []byte, i int) int {
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	if i == len(p) {
		return i
	}
	c := p[i]
	switch h.st {
	case sValue, sFirstValue:
		if c == ']' && h.st == sFirstValue {
			return h.close(p, i, false)
		}
		return h.beginValue(p, i)
	case sFirstKey, sKey:
		if c == '}' && h.st == sFirstKey {
			return h.close(p, i, true)
		}
		if c != '"' {
			return h.fail(p, i, "expected a member name")
		}
		h.beginKey(i)
		if end, ok := stringEnd(p, i+1); ok {
			h.endString(p, end-1)
			return end
		}
		return i + 1
	case sColon:
		if c != ':' {
			return h.fail(p, i, "expected ':' after a member name")
		}
		h.emitByte(':', h.frames[len(h.frames)-1].keep != keepNone)
		h.st = sValue
		return i + 1
	}
	// sNext
	if len(h.frames) == 0 {
		return h.fail(p, i, "unexpected data after the value")
	}
	switch c {
	case ',':
		f := &h.frames[len(h.frames)-1]
		h.emitByte(',', f.keep == keepAll)
		if f.object {
			h.st = sKey
		} else {
			h.st = sValue
		}
		if len(h.out.buf) >= sinkSize {
			h.out.flush()
		}
		return i + 1
	case '}', ']':
		return h.close(p, i, c == '}')
	}
	return h.fail(p, i, "expected ',' or a closing bracket")
}

// beginValue starts the value whose first byte is p[i]. A scalar that
// ends within p is read whole at once; the state machine reads the rest.
func (h *JSONHasher) beginValue(p []byte, i int) int {
	c := p[i]
	if c == '{' || c == '[' {
		if len(h.frames) == maxDepth {
			return h.fail(p, i, "nested too deeply")
		}
		k, state := h.decide(true)
		h.frames = append(h.frames, frame{state: state, keep: k, object: c == '{'})
		h.emitByte(c, k != keepNone)
		h.st = sFirstValue
		if c == '{' {
			h.st = sFirstKey
		}
		return i + 1
	}
	var end int
	var ok bool
	switch {
	case c == '"':
		end, ok = stringEnd(p, i+1)
		h.st = sString
	case c == '-' || isDigit(c):
		end, ok = scalarEnd(p, i)
		h.st, h.num = sNumber, nInt
		if c == '-' {
			h.num = nMinus
		} else if c == '0' {
			h.num = nZero
		}
	case c == 't' || c == 'f' || c == 'n':
		end, ok = scalarEnd(p, i)
		h.st, h.lit = sLiteral, literals[c]
	default:
		return h.fail(p, i, "expected a value")
	}
	h.decide(false)
	if ok {
		h.emit(p[i:end])
		h.st = sNext
		return end
	}
	h.tokStart = i
	return i + 1
}

// literals maps the first byte of a literal to the bytes that must follow.
var literals = [256]string{'t': "rue", 'f': "alse", 'n': "ull"}

// decide settles whether the value now starting counts, and sets tokOut.
// For a member of a matched object it also settles the pending name, and
// for an element of a matched array, its comma.
func (h *JSONHasher) decide(container bool) (keep, int32) {
	var k keep
	var state int32
	if len(h.frames) == 0 {
		k = keepAll
		if len(h.s.states) > 0 {
			k, state = h.rule(0, container)
		}
		h.tokOut = k != keepNone
		return k, state
	}
	f := &h.frames[len(h.frames)-1]
	if f.keep != keepSome {
		h.tokOut = f.keep != keepNone
		return f.keep, 0
	}
	var next int32
	if f.object {
		next = h.next
	} else {
		next = h.s.element(f.state, f.index)
		f.index++
	}
	k, state = h.rule(next, container)
	switch {
	case f.object && k == keepNone:
		h.out.buf = h.out.buf[:h.out.mark]
	case !f.object && k != keepNone && f.emitted:
		h.out.buf = append(h.out.buf, ',')
	}
	h.out.mark = -1
	if k != keepNone {
		f.emitted = true
	}
	h.tokOut = k != keepNone
	return k, state
}

// rule applies the Semantic to a value in match state state.
func (h *JSONHasher) rule(state int32, container bool) (keep, int32) {
	only := h.s.only
	if state == dead {
		if only {
			return keepNone, 0
		}
		return keepAll, 0
	}
	if h.s.states[state].selected {
		if only {
			h.matched++
			return keepAll, 0
		}
		return keepNone, 0
	}
	if container {
		return keepSome, state
	}
	if only {
		return keepNone, 0
	}
	return keepAll, 0
}

// beginKey starts the member name whose opening quote is p[i].
func (h *JSONHasher) beginKey(i int) {
	f := &h.frames[len(h.frames)-1]
	h.st, h.tokStart, h.inKey = sString, i, true
	h.tokOut = f.keep != keepNone
	if f.keep == keepSome {
		h.out.mark = len(h.out.buf)
		if f.emitted {
			h.out.buf = append(h.out.buf, ',')
		}
		h.keyWant, h.keyFrom, h.key = true, i+1, h.key[:0]
		h.keySpilled, h.keyLong = false, false
	}
}

// close ends the innermost object (object) or array at p[i].
func (h *JSONHasher) close(p []byte, i int, object bool) int {
	if len(h.frames) == 0 {
		return h.fail(p, i, "unexpected closing bracket")
	}
	f := h.frames[len(h.frames)-1]
	if f.object != object {
		return h.fail(p, i, "mismatched closing bracket")
	}
	h.frames = h.frames[:len(h.frames)-1]
	h.emitByte(p[i], f.keep != keepNone)
	h.st = sNext
	return i + 1
}
