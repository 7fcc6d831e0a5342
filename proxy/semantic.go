package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
)

// isJSON reports whether a response's Content-Type is application/json or
// a structured syntax suffix +json (RFC 6839), parameters aside: the bodies
// json_ignore and json_only apply to.
func isJSON(h http.Header) bool {
	ct := first(h, "Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	typ, sub, ok := strings.Cut(ct, "/")
	if !ok || typ == "" || strings.ContainsAny(sub, "/ \t") {
		return false
	}
	if strings.EqualFold(ct, "application/json") {
		return true
	}
	return len(sub) > len("+json") && strings.EqualFold(sub[len(sub)-len("+json"):], "+json")
}

// bodyHash returns the hash of a buffered body that makes its ETag: with
// json_ignore or json_only, that of a JSON body's tokens (semantic true),
// else that of its bytes. A body the rule cannot apply to is logged once
// per resource.
func (m *Middleware) bodyHash(bw *bodyWriter, r *http.Request) (digest string, semantic bool) {
	switch {
	case bw.json == nil:
	case bw.jsonOn && bw.json.Valid():
		return string(bw.json.AppendETag(bw.tagBuf[:0])), true
	case bw.jsonOn:
		m.notJSON(r, "body is not valid JSON; its ETag is the hash of its bytes", bw, zap.Error(bw.json.Err()))
		// Declared JSON, so only its tokens were hashed as it came: hash
		// the bytes now, from the buffer or the temporary file.
		bw.jsonOn, bw.jsonBad = false, true
		bw.hasher.Reset()
		if _, err := bw.body.WriteTo(bw.hasher); err != nil {
			m.log.Warn("cannot read back a buffered body to hash it", requestFields(r, zap.Error(err))...)
		}
	case !bw.jsonBad:
		m.notJSON(r, "body is not application/json or +json; its ETag is the hash of its bytes", bw)
	}
	return string(bw.hasher.AppendETag(bw.tagBuf[:0])), false
}

// notJSON tells the operator, once per resource, that json_ignore or
// json_only did not apply to its body.
func (m *Middleware) notJSON(r *http.Request, msg string, bw *bodyWriter, extra ...zap.Field) {
	if !m.notJSONLogged.first(m.resourceKey(r)) {
		return
	}
	fields := requestFields(r, zap.String("content_type", first(bw.header, "Content-Type")))
	m.log.Warn(msg, append(fields, extra...)...)
}

// onceTable remembers which resources were logged, in bounded memory: a
// resource's slot holds its key hash, so a resource is logged again only
// after others took its slot.
type onceTable struct {
	slots [4096]atomic.Uint64
}

// first reports whether rk was not in its slot, and puts it there.
func (t *onceTable) first(rk resourceKey) bool {
	s := &t.slots[rk.Lo%uint64(len(t.slots))]
	return s.Swap(rk.Hi|1) != rk.Hi|1 // |1: a key never looks like an empty slot
}

// newJSONHasher returns a pooled semantic hasher, or nil without a rule.
func (m *Middleware) newJSONHasher() *hashing.JSONHasher {
	if m.cfg.Semantic == nil {
		return nil
	}
	h := m.jsonHashers.Get().(*hashing.JSONHasher)
	h.Reset()
	return h
}

func (m *Middleware) releaseJSONHasher(h *hashing.JSONHasher) {
	if h != nil {
		m.jsonHashers.Put(h)
	}
}
