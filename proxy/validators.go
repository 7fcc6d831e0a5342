package proxy

import (
	"net/http"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

// assignETag sets and returns the response's ETag: the upstream's own when
// it is strong and configured to be kept, else the hash of the body.
func (m *Middleware) assignETag(h http.Header, bw *bodyWriter, r *http.Request) hashing.Tag {
	if m.cfg.KeepUpstreamETag {
		if v := h["Etag"]; len(v) == 1 {
			if t, err := hashing.ParseTag(v[0]); err == nil && !t.Weak {
				return t
			}
		}
	}
	digest, _ := m.bodyHash(bw, r)
	tag := hashing.Tag{Opaque: digest}
	h["Etag"] = []string{tag.Opaque}
	return tag
}

func lastModified(h http.Header) time.Time {
	v := first(h, "Last-Modified")
	if v == "" {
		return time.Time{}
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}
	}
	return t
}
