// Package problem writes RFC 9457 problem details, the one error format every
// etaggate handler answers with.
package problem

import (
	"encoding/json"
	"errors"
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

// representationFields describe a body that an upstream response left on
// the writer, not the error answer that replaces it.
var representationFields = [...]string{
	"Content-Type", "Content-Length", "Content-Encoding", "Content-Range", "Content-Language",
	"Content-Disposition", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest",
	"Last-Modified", "Accept-Ranges", "Transfer-Encoding", "Trailer",
}

// clearRepresentation drops the representationFields and forbids caching the
// error answer. Headers that belong to the answer (ETag on a 412, Allow,
// Retry-After, WWW-Authenticate) are left alone.
func clearRepresentation(h http.Header) {
	for _, k := range representationFields {
		delete(h, k)
	}
	h.Set("Cache-Control", "no-store")
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
	clearRepresentation(h)
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}

// Router hands an error answer to the server's own error handling (Caddy's
// handle_errors): it returns the error the handler must return to the
// server, or nil when the server has no error handling for r.
type Router func(r *http.Request, status int, err error) error

// Answer refuses r with d: when route (which may be nil) takes the error,
// Answer returns it for the handler to return, and the server's error
// routes render it; otherwise it writes d and returns nil. Headers already
// set on w are kept either way.
func Answer(w http.ResponseWriter, r *http.Request, d *Details, route Router) error {
	if route != nil {
		if err := route(r, d.Status, errors.New(d.Detail)); err != nil {
			clearRepresentation(w.Header())
			return err
		}
	}
	Write(w, d)
	return nil
}
