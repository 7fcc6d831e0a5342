package hashing

// recorder is a Hasher whose "tag" is everything written to it, so tests
// can see the exact token stream a JSONHasher hashes.
type recorder struct{ b []byte }

func (r *recorder) Write(p []byte) (int, error)  { r.b = append(r.b, p...); return len(p), nil }
func (r *recorder) Reset()                       { r.b = r.b[:0] }
func (r *recorder) AppendETag(dst []byte) []byte { return append(dst, r.b...) }

// Stream returns the byte stream whose hash would be body's tag under s,
// writing body in pieces of chunk bytes (all at once when chunk <= 0), and
// whether body is JSON.
func Stream(s *Semantic, body []byte, chunk int) ([]byte, bool) {
	h := s.newHasher(&recorder{}, &recorder{})
	if chunk <= 0 {
		chunk = len(body) + 1
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		_, _ = h.Write(body[:n])
		body = body[n:]
	}
	if !h.Valid() {
		return nil, false
	}
	return h.AppendETag(nil), true
}

// StrongMatch reports whether a and b match under strong comparison: both
// strong and with the same opaque-tag (RFC 9110 §8.8.3.2).
func StrongMatch(a, b Tag) bool {
	return !a.Weak && !b.Weak && a.Opaque == b.Opaque
}

// WeakMatch reports whether a and b match under weak comparison: the same
// opaque-tag, whatever their weakness.
func WeakMatch(a, b Tag) bool {
	return a.Opaque == b.Opaque
}

// List is a parsed If-Match or If-None-Match field.
type List struct {
	Any  bool
	Tags []Tag
}

// ParseList parses every field line of an entity-tag list. A field made only
// of whitespace and commas yields an empty List.
func ParseList(values []string) (List, error) {
	var l List
	s := NewScanner(values)
	for s.Next() {
		l.Tags = append(l.Tags, s.Tag())
	}
	if s.Err() != nil {
		return List{}, s.Err()
	}
	l.Any = s.Any()
	return l, nil
}
