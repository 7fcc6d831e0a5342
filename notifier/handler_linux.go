//go:build linux

package notifier

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/internal/problem"
	"github.com/etaggate/etaggate/sse"
)

const notifySuffix = "/notify"

// target splits a notify URL into its still-escaped ref and its query. The
// URL as Qumulo's documentation writes it, with & where ? belongs
// (<prefix>/<ref>/notify&filter=...&recursive=...), is taken for the
// query it means: a last path segment "notify&..." holds the query.
func (n *Notifier) target(r *http.Request) (ref, rawQuery string, ok bool) {
	p, rawQuery := r.URL.EscapedPath(), r.URL.RawQuery
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		if q, found := strings.CutPrefix(p[i+1:], "notify&"); found {
			p = p[:i] + notifySuffix
			rawQuery = strings.Trim(q+"&"+rawQuery, "&")
		}
	}
	pre := n.cfg.Prefix + "/"
	if len(p) <= len(pre)+len(notifySuffix) || !strings.HasPrefix(p, pre) || !strings.HasSuffix(p, notifySuffix) {
		return "", "", false
	}
	return p[len(pre) : len(p)-len(notifySuffix)], rawQuery, true
}

// Match reports whether r is addressed to the notify endpoint, i.e. its
// path is <prefix>/<ref>/notify. Other requests are not n's business.
func (n *Notifier) Match(r *http.Request) bool {
	_, _, ok := n.target(r)
	return ok
}

// ServeHTTP answers GET <prefix>/<ref>/notify?filter=...&recursive=... with
// a stream of server-sent events, and every error with a problem document:
// the endpoint for a server without error routes of its own.
func (n *Notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = n.serve(w, r, nil)
}

// Serve is ServeHTTP for a server with error routes (Caddy's
// handle_errors): an error that Config.RouteError takes is returned, for
// the server to render, instead of written as a problem document.
func (n *Notifier) Serve(w http.ResponseWriter, r *http.Request) error {
	return n.serve(w, r, n.cfg.RouteError)
}

func (n *Notifier) serve(w http.ResponseWriter, r *http.Request, route problem.Router) error {
	ref, rawQuery, ok := n.target(r)
	if !ok {
		return n.fail(w, r, route, http.StatusNotFound, "not a notify URL; expected "+n.cfg.Prefix+"/<ref>/notify", nil, nil)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return n.fail(w, r, route, http.StatusMethodNotAllowed, "the notify endpoint only answers GET", nil, nil)
	}
	if n.isClosed() {
		return n.fail(w, r, route, http.StatusServiceUnavailable, "the server is shutting down or reloading", nil, sse.ErrClosed)
	}
	q, _ := url.ParseQuery(rawQuery) // what parses, as r.URL.Query() does
	filter, err := ParseFilter(strings.Join(q["filter"], ","))
	if err != nil {
		return n.fail(w, r, route, http.StatusBadRequest, "filter: "+strings.TrimPrefix(err.Error(), "notifier: "),
			map[string]any{"valid_values": TypeNames()}, nil)
	}
	recursive := false
	if vs, ok := q["recursive"]; ok {
		switch strings.ToLower(vs[0]) {
		case "true":
			recursive = true
		case "false":
		default:
			return n.fail(w, r, route, http.StatusBadRequest, "recursive must be true or false, not "+strconv.Quote(vs[0]),
				map[string]any{"valid_values": []string{"true", "false"}}, nil)
		}
	}
	fd, rel, err := n.resolve(ref)
	if err != nil {
		return n.failRef(w, r, route, ref, err)
	}
	lastID, resume := sse.LastEventID(r)
	s, err := n.subscribe(fd, rel, recursive, filter, sse.Subscription[change]{LastEventID: lastID, Resume: resume, Name: ref})
	if err != nil {
		return n.failRef(w, r, route, ref, err)
	}
	n.log.Debug("stream opened", zap.String("ref", ref), zap.Bool("recursive", recursive),
		zap.String("remote_addr", r.RemoteAddr), zap.Bool("last_event_id", resume))
	s.Serve(w, r)
	return nil
}

func (n *Notifier) failRef(w http.ResponseWriter, r *http.Request, route problem.Router, ref string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return n.fail(w, r, route, http.StatusNotFound, "no directory "+strconv.Quote(ref)+" below root", nil, err)
	case errors.Is(err, ErrOutsideRoot):
		return n.fail(w, r, route, http.StatusNotFound, "no directory "+strconv.Quote(ref)+" below root", nil, err)
	case errors.Is(err, ErrNotDirectory):
		return n.fail(w, r, route, http.StatusBadRequest, strconv.Quote(ref)+" is not a directory; only directories can be watched", nil, err)
	case errors.Is(err, sse.ErrTooManySubscribers):
		w.Header().Set("Retry-After", "5")
		return n.fail(w, r, route, http.StatusServiceUnavailable, "too many subscribers (max_subscribers "+strconv.Itoa(n.cfg.Hub.MaxSubscribers)+")", nil, err)
	case errors.Is(err, ErrWatchLimit):
		return n.fail(w, r, route, http.StatusServiceUnavailable,
			"the kernel's inotify watch limit is reached; raise the sysctl fs.inotify.max_user_watches",
			map[string]any{"sysctl": "fs.inotify.max_user_watches"}, err)
	case errors.Is(err, sse.ErrClosed):
		return n.fail(w, r, route, http.StatusServiceUnavailable, "the server is shutting down or reloading", nil, err)
	case errors.Is(err, fs.ErrPermission):
		return n.fail(w, r, route, http.StatusForbidden, "the server may not read "+strconv.Quote(ref), nil, err)
	default:
		return n.fail(w, r, route, http.StatusInternalServerError, "cannot watch "+strconv.Quote(ref), nil, err)
	}
}

// fail refuses r with a problem document, or hands it to route, and logs
// it.
func (n *Notifier) fail(w http.ResponseWriter, r *http.Request, route problem.Router, status int, detail string, ext map[string]any, err error) error {
	d := problem.New(status, detail)
	d.Extensions = ext
	return problem.Refuse(n.log, "fs_notify request refused", w, r, d, route, err)
}
