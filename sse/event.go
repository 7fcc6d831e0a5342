package sse

import (
	"strconv"
	"unicode/utf8"
)

// event is one encoded SSE event or comment, held inside its HTTP/1.1
// chunk framing ("<hex length>\r\n" event "\r\n"): a connection the hub
// writes itself is sent the chunk as it is, a response framed by net/http
// the event alone. Encoding it once serves every subscriber of a view.
type event struct {
	chunk []byte
	at    int // where the event begins in chunk
}

// chunkRoom is the space left before an event for its chunk header: up
// to 8 hex digits and CRLF.
const chunkRoom = 10

// newEvent starts an event of about size bytes: append the event to the
// returned buffer, then call chunked.
func newEvent(size int) []byte { return make([]byte, chunkRoom, chunkRoom+size+2) }

// chunked frames b, started by newEvent, as one HTTP/1.1 chunk.
func chunked(b []byte) event {
	var hex [8]byte
	h := strconv.AppendUint(hex[:0], uint64(len(b)-chunkRoom), 16)
	at := chunkRoom - 2 - len(h)
	copy(b[at:], h)
	b[chunkRoom-2], b[chunkRoom-1] = '\r', '\n'
	b = append(b, '\r', '\n')
	return event{chunk: b[at:], at: chunkRoom - at}
}

func textEvent(s string) event { return chunked(append(newEvent(len(s)), s...)) }

// text is the SSE event without its chunk framing.
func (e event) text() []byte { return e.chunk[e.at : len(e.chunk)-2] }

// The comments of every stream: the first, sent once the subscription is
// in place; the keep-alive; the last, before a clean end.
var (
	openingComment = []byte(": watching\n\n")
	keepalive      = textEvent(": keepalive\n\n")
	closingComment = textEvent(": closing\n\n")
)

// encodeEvent writes one frame as a view's subscribers see it: its id and
// the JSON list of the notifications that concern them.
func encodeEvent[N any](id uint64, t Topic[N], ms []match[N]) event {
	b := newEvent(64 + len(ms)*128)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\ndata: ["...)
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = t.AppendJSON(b, m.n, m.at)
	}
	b = append(b, "]\n\n"...)
	return chunked(b)
}

// overflowEvent tells a subscriber that notifications were lost, and why.
// It carries an id, so that the client resumes after it, and data, which
// EventSource needs to dispatch it.
func overflowEvent(id uint64, reason string) event {
	b := newEvent(80)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: overflow\ndata: {\"reason\":"...)
	b = AppendJSONString(b, []byte(reason))
	b = append(b, "}\n\n"...)
	return chunked(b)
}

// AppendJSONString appends s as a JSON string, for a Topic's AppendJSON.
// Bytes that are not UTF-8 (Linux names are bytes) become U+FFFD; line
// separators are escaped, so the result never breaks an SSE data line.
func AppendJSONString(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
