// Package feed serves the change feed: the writes made through an etag
// handler, as server-sent events in fs_notify's framing, on the sse hub.
// A legacy API has no change notifications; the gateway sees every write
// that goes through it, so it can give the API a feed of them.
//
// The etag engine tells the feed of each write the upstream answered 2xx
// through proxy.Config.Written (see Feed.Written), while the write still
// holds its resource's lock, so that the feed's order is the order of the
// writes on each resource. The hub numbers, batches, replays and fans the
// changes out; a clustered sse.Transport given to New carries them across
// replicas.
package feed

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/internal/problem"
	"github.com/etaggate/etaggate/proxy"
	"github.com/etaggate/etaggate/sse"
)

// Config configures a Feed.
type Config struct {
	// Path is the URL path the feed is served at.
	Path string
	// Hub configures the streams: keepalive, batch, queue, history and
	// max_subscribers.
	Hub sse.Config
	// RouteError hands a refusal to the server's error routes (Caddy's
	// handle_errors), for Serve; nil: problem documents.
	RouteError problem.Router
}

// Feed is one change feed. Close ends its streams.
type Feed struct {
	path  string
	route problem.Router
	hub   *sse.Hub[Change]
	max   int
	log   *zap.Logger
}

// New starts a feed. A nil transport keeps it to this process.
func New(cfg Config, transport sse.Transport[Change]) (*Feed, error) {
	if !strings.HasPrefix(cfg.Path, "/") {
		return nil, errors.New("the feed's path " + strconv.Quote(cfg.Path) + " must begin with /")
	}
	if cfg.Hub.Logger == nil {
		cfg.Hub.Logger = zap.NewNop()
	}
	hub, err := sse.New[Change](cfg.Hub, source{}, transport)
	if err != nil {
		return nil, err
	}
	return &Feed{path: cfg.Path, route: cfg.RouteError, hub: hub, max: cfg.Hub.MaxSubscribers, log: cfg.Hub.Logger}, nil
}

// Match reports whether r is addressed to the feed.
func (f *Feed) Match(r *http.Request) bool { return r.URL.Path == f.path }

// Written publishes the change a write made: the proxy.Config.Written of
// the engine whose writes the feed reports.
func (f *Feed) Written(w proxy.Written) {
	if c, ok := Of(w); ok {
		f.Publish(c)
	}
}

// Publish adds a change to the feed. It never blocks on a subscriber.
func (f *Feed) Publish(c Change) { f.hub.Publish(c) }

// ServeHTTP answers GET with the stream of changes whose path starts with
// one of the prefix parameters (all of them without one), any other method
// with 405, and every refusal with a problem document: the feed for a
// server without error routes of its own.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) { _ = f.serve(w, r, nil) }

// Serve is ServeHTTP for a server with error routes (Caddy's
// handle_errors): a refusal that Config.RouteError takes is returned, for
// the server to render, instead of written as a problem document.
func (f *Feed) Serve(w http.ResponseWriter, r *http.Request) error { return f.serve(w, r, f.route) }

func (f *Feed) serve(w http.ResponseWriter, r *http.Request, route problem.Router) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return f.fail(w, r, route, http.StatusMethodNotAllowed, "the change feed only answers GET", nil)
	}
	prefixes := r.URL.Query()["prefix"]
	for _, p := range prefixes {
		if p != "" && !strings.HasPrefix(p, "/") {
			return f.fail(w, r, route, http.StatusBadRequest, "prefix "+strconv.Quote(p)+" must begin with /, as the paths it selects do", nil)
		}
	}
	lastID, resume := sse.LastEventID(r)
	s, err := f.hub.Subscribe(sse.Subscription[Change]{
		Topic:       newTopic(prefixes),
		LastEventID: lastID,
		Resume:      resume,
		Name:        f.path,
	})
	switch {
	case errors.Is(err, sse.ErrTooManySubscribers):
		w.Header().Set("Retry-After", "5")
		return f.fail(w, r, route, http.StatusServiceUnavailable, "too many subscribers (max_subscribers "+strconv.Itoa(f.max)+")", err)
	case err != nil:
		w.Header().Set("Retry-After", "1")
		return f.fail(w, r, route, http.StatusServiceUnavailable, "the server is shutting down or reloading", err)
	}
	s.Serve(w, r)
	return nil
}

// Stats returns the hub's counters.
func (f *Feed) Stats() sse.Stats { return f.hub.Stats() }

// Close ends every stream and waits for the feed's goroutines.
func (f *Feed) Close() error { return f.hub.Close() }

// fail refuses r, through route when it takes the refusal, and logs it.
func (f *Feed) fail(w http.ResponseWriter, r *http.Request, route problem.Router, status int, detail string, err error) error {
	return problem.Refuse(f.log, "change feed request refused", w, r, problem.New(status, detail), route, err)
}
