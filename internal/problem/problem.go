// Package problem writes RFC 9457 problem details, the one error format every
// etaggate handler answers with.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem details document.
const ContentType = "application/problem+json"

// Details is an RFC 9457 problem details object.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Extensions are added as members next to the standard ones.
	Extensions map[string]any `json:"-"`
}

// New returns a problem of the given status whose type is "about:blank" and
// whose title is the status text, as RFC 9457 §4.2.1 recommends when no more
// specific type exists.
func New(status int, detail string) *Details {
	return &Details{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// MarshalJSON flattens Extensions into the top-level object.
func (d *Details) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 4+len(d.Extensions))
	for k, v := range d.Extensions {
		m[k] = v
	}
	m["type"] = d.Type
	m["title"] = d.Title
	m["status"] = d.Status
	if d.Detail != "" {
		m["detail"] = d.Detail
	}
	return json.Marshal(m)
}

// Write sends d as the response. Headers already set on w (an ETag, say) are
// kept; representation headers left by an upstream response are replaced.
func Write(w http.ResponseWriter, d *Details) {
	body, err := json.Marshal(d)
	if err != nil {
		// Extensions are ours and always marshal; this is unreachable in practice.
		body = []byte(`{"type":"about:blank","status":500,"title":"Internal Server Error"}`)
	}
	h := w.Header()
	for _, k := range []string{"Content-Encoding", "Content-Range", "Last-Modified", "Transfer-Encoding", "Content-Disposition", "Content-Language"} {
		h.Del(k)
	}
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}
