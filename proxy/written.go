package proxy

import "net/http"

// Written is a write through the handler that the upstream answered with
// a 2xx, as Config.Written is told of it.
type Written struct {
	Request *http.Request
	// Method is the write's method, the one a method override names.
	Method string
	Status int
	// Header is the response's header as it goes to the client.
	Header http.Header
	// ETag is the new representation's ETag when the gateway read it after
	// the write (etag_after_write), else "". It is the writer's variant,
	// and is known even where RFC 9110 §9.3.4 keeps it off a PUT's answer.
	ETag string
}

// written tells Config.Written of a write's 2xx: for an enforced write
// after the read that follows it and before its lock is released, so that
// what is told of one resource comes in the order of its writes.
func (m *Middleware) written(f *forwardWriter, status int) {
	if m.cfg.Written == nil {
		return
	}
	m.cfg.Written(Written{Request: f.r, Method: f.method, Status: status, Header: f.ResponseWriter.Header(), ETag: f.newETag})
}
