package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/problem"
)

// refuse answers r with p: the problem document, or, when the server has
// error routes of its own (RouteError), the error those routes render.
// Every refusal of the engine goes through here.
func (m *Middleware) refuse(w http.ResponseWriter, r *http.Request, p *problem.Details) error {
	return problem.Answer(w, r, p, m.cfg.RouteError)
}

func (m *Middleware) badRequest(w http.ResponseWriter, r *http.Request, err error) error {
	field := ""
	var fe fieldError
	if errors.As(err, &fe) {
		field = fe.field
	}
	m.observe(Malformed)
	m.log.Info("malformed precondition", requestFields(r, zap.String("header", field), zap.Error(err))...)
	p := problem.New(http.StatusBadRequest, err.Error()+`; entity-tags are quoted, like "abc" or W/"abc", and separated by commas`)
	if field != "" {
		p.Extensions = map[string]any{"header": field}
	}
	return m.refuse(w, r, p)
}

func (m *Middleware) preconditionFailed(w http.ResponseWriter, r *http.Request, field string, cur hashing.Tag) error {
	m.observe(PreconditionFailed)
	m.log.Info("precondition failed", requestFields(r, zap.String("header", field), zap.String("etag", cur.Opaque))...)
	var detail string
	switch {
	case field == "If-None-Match" && r.Header.Get("If-None-Match") == "*":
		detail = "If-None-Match: * failed: the resource already exists"
	case field == "If-Match" && cur.Opaque == "":
		detail = "If-Match failed: the resource does not exist or has no current ETag"
	case field == "If-Unmodified-Since":
		detail = "If-Unmodified-Since failed: the resource was modified after that date"
	case field == "If-None-Match":
		detail = "If-None-Match failed: the current ETag is in the list"
	default:
		detail = "If-Match failed: the resource changed since you read it; GET it again and retry with its current ETag"
	}
	p := problem.New(http.StatusPreconditionFailed, detail)
	p.Extensions = map[string]any{"header": field}
	if cur.Opaque != "" {
		w.Header()["Etag"] = []string{cur.String()}
		p.Extensions["etag"] = cur.String()
	}
	return m.refuse(w, r, p)
}

func (m *Middleware) checkFailed(w http.ResponseWriter, r *http.Request, err error) error {
	var ce *checkError
	if !errors.As(err, &ce) {
		ce = &checkError{status: http.StatusBadGateway, err: err}
	}
	m.observe(CheckFailed)
	m.log.Warn("cannot read the current representation; write not forwarded", requestFields(r, zap.Int("status", ce.status), zap.Error(err))...)
	var detail string
	if ce.status < 500 {
		// The client may not read the resource; relay why, so it can fix it.
		for _, k := range checkRelayed {
			if v := ce.header[k]; len(v) > 0 {
				w.Header()[k] = v
			}
		}
		detail = fmt.Sprintf("reading the current state of %s answered %d %s, so the %s was not forwarded", r.URL.Path, ce.status, http.StatusText(ce.status), r.Method)
	} else {
		detail = fmt.Sprintf("could not read the current state of %s to check the preconditions (%v), so the %s was not forwarded; retry later", r.URL.Path, ce.err, r.Method)
	}
	return m.refuse(w, r, problem.New(ce.status, detail))
}

// preconditionRequired answers 428 to a write under require_precondition
// whose preconditions are absent or were all ignored (see protected); cur is
// the current representation once it was looked up.
func (m *Middleware) preconditionRequired(w http.ResponseWriter, r *http.Request, method, ignored string, cur *current) error {
	m.observe(PreconditionRequired)
	m.log.Info("precondition required", requestFields(r, zap.String("method_enforced", method), zap.String("ignored", ignored))...)
	detail := fmt.Sprintf("%s %s needs a precondition: GET the resource and send its ETag in If-Match, or send If-None-Match: * to create it", method, r.URL.Path)
	switch {
	case ignored == "If-None-Match":
		detail += "; the If-None-Match sent lists no entity-tag, so it protects nothing"
	case ignored == "If-Unmodified-Since" && cur == nil:
		detail += fmt.Sprintf("; If-Unmodified-Since %q is not an HTTP-date such as %q, so it is ignored (RFC 9110 §13.1.4)",
			problem.Clip(first(r.Header, "If-Unmodified-Since")), "Sun, 06 Nov 1994 08:49:37 GMT")
	case ignored == "If-Unmodified-Since":
		detail += "; If-Unmodified-Since is ignored because the resource does not exist or has no Last-Modified date (RFC 9110 §13.1.4)"
	}
	p := problem.New(http.StatusPreconditionRequired, detail)
	if ignored != "" {
		p.Extensions = map[string]any{"header": ignored}
	}
	return m.refuse(w, r, p)
}

// badOverride answers 400 to a request whose method-override fields
// disagree.
func (m *Middleware) badOverride(w http.ResponseWriter, r *http.Request, err error) error {
	m.observe(Malformed)
	m.log.Info("conflicting method overrides", requestFields(r, zap.Error(err))...)
	p := problem.New(http.StatusBadRequest, err.Error())
	var oe *overrideError
	if errors.As(err, &oe) {
		p.Extensions = map[string]any{"header": oe.field}
	}
	return m.refuse(w, r, p)
}

// gatewayStatus maps an error from the rest of the route to 504 for a
// timeout and 502 for anything else.
func (m *Middleware) gatewayStatus(err error) int {
	if m.cfg.ErrorStatus != nil && m.cfg.ErrorStatus(err) == http.StatusGatewayTimeout {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// readBroke answers a read whose upstream response broke off. While nothing
// of it has reached the client, a 502 says so; once headers or bytes have
// left, only cutting the connection tells the client that what it got is
// incomplete.
func (m *Middleware) readBroke(w http.ResponseWriter, r *http.Request, bw *bodyWriter) error {
	if bw.wrote {
		panic(http.ErrAbortHandler)
	}
	m.log.Warn("the upstream's response broke off before anything was sent; answering 502", requestFields(r)...)
	h := w.Header()
	for _, k := range notModifiedDrop {
		delete(h, k)
	}
	delete(h, "Etag")
	return m.refuse(w, r, problem.New(http.StatusBadGateway, fmt.Sprintf(
		"the upstream's response to %s %s broke off before its end; retry later", r.Method, r.URL.Path)))
}

// lockUnavailable answers a write that could not have its resource's lock,
// after waiting lock_wait for it.
func (m *Middleware) lockUnavailable(w http.ResponseWriter, r *http.Request, err error) error {
	m.observe(LockTimeout)
	m.log.Warn("no write lock within lock_wait; write not forwarded", requestFields(r, zap.Duration("lock_wait", m.cfg.LockWait), zap.Error(err))...)
	return m.unavailable(w, r, fmt.Sprintf("another write to %s held its lock for longer than %s, so the %s was not forwarded; retry later",
		r.URL.Path, m.cfg.LockWait, r.Method))
}

// unavailable answers 503 with Retry-After: the write was not forwarded
// and may succeed when retried.
func (m *Middleware) unavailable(w http.ResponseWriter, r *http.Request, detail string) error {
	w.Header()["Retry-After"] = []string{"1"}
	return m.refuse(w, r, problem.New(http.StatusServiceUnavailable, detail))
}

// clientGone reports whether r's client has left; its write is then dropped
// unanswered rather than forwarded, as nginx does with
// proxy_ignore_client_abort off.
func (m *Middleware) clientGone(r *http.Request, while string) bool {
	if r.Context().Err() == nil {
		return false
	}
	m.observe(ClientGone)
	m.log.Debug("client left; write dropped, not forwarded", requestFields(r, zap.String("while", while))...)
	return true
}

// bodyTooLarge answers a write whose body outgrew a limit set in front of
// this handler (Caddy's request_body max_size).
func (m *Middleware) bodyTooLarge(w http.ResponseWriter, r *http.Request, limit int64) error {
	m.log.Info("request body too large; write not forwarded", requestFields(r, zap.Int64("limit", limit))...)
	return m.refuse(w, r, problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf(
		"the body of the %s is larger than the %d bytes allowed, so it was not forwarded", r.Method, limit)))
}

// notFound answers a DELETE with If-Match tags whose resource does not
// exist (see deletesNothing).
func (m *Middleware) notFound(w http.ResponseWriter, r *http.Request) error {
	m.observe(NotFound)
	m.log.Info("DELETE of a missing resource; not forwarded", requestFields(r)...)
	return m.refuse(w, r, problem.New(http.StatusNotFound, fmt.Sprintf(
		"%s does not exist, so there is nothing to DELETE; its If-Match was not evaluated", r.URL.Path)))
}
