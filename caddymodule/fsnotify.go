package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/etaggate/etaggate/notifier"
)

func init() {
	caddy.RegisterModule(FSNotify{})
	httpcaddyfile.RegisterHandlerDirective("fs_notify", parseFSNotify)
	httpcaddyfile.RegisterDirectiveOrder("fs_notify", httpcaddyfile.Before, "reverse_proxy")
}

// FSNotify streams change notifications for a directory tree as
// server-sent events, in the shape of Qumulo Core's
// `GET /v1/files/<ref>/notify?filter=<types>&recursive=<bool>` API.
//
// `<ref>` is a directory below `root`: an absolute path, URL-encoded
// (`%2Fmy%2Fdir`) or as plain segments (`my/dir`), or its file ID (inode
// number). Requests whose path is not `<prefix>/<ref>/notify` are passed to
// the next handler.
//
// Notifications gathered in one batch window make a frame, numbered by one
// id; each stream receives the part of a frame that concerns it as one SSE
// event. A field left out, or 0, takes its default.
type FSNotify struct {
	// The directory tree that can be watched. Nothing outside it (through
	// `..` or symlinks) can be watched or is ever reported. Required.
	Root string `json:"root,omitempty"`

	// The URL path before the ref. Default: `/v1/files`.
	Prefix string `json:"prefix,omitempty"`

	// Interval of the comment lines that keep an idle stream open through
	// proxies. Default: 15s.
	Keepalive caddy.Duration `json:"keepalive,omitempty"`

	// How long notifications are gathered into one frame. Default: 50ms.
	Batch caddy.Duration `json:"batch,omitempty"`

	// The events a subscriber may have waiting before it is sent
	// `event: overflow` and disconnected, so that it never slows the
	// others. Default: 1024.
	Queue int `json:"queue,omitempty"`

	// The number of recent frames kept to replay to a client reconnecting
	// with `Last-Event-ID`. Default: 4096.
	History int `json:"history,omitempty"`

	// The most streams open at once; more are refused with 503.
	// Default: 10000.
	MaxSubscribers int `json:"max_subscribers,omitempty"`

	engine *notifier.Notifier
	logger *zap.Logger
	end    *shutdownCloser
}

// CaddyModule returns the Caddy module information.
func (FSNotify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.fs_notify",
		New: func() caddy.Module { return new(FSNotify) },
	}
}

// Provision fills in the defaults, checks the configuration and starts
// watching root.
func (m *FSNotify) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	cfg := notifier.DefaultConfig()
	m.Prefix = cmp.Or(m.Prefix, cfg.Prefix)
	m.Keepalive = cmp.Or(m.Keepalive, caddy.Duration(cfg.Hub.Keepalive))
	m.Batch = cmp.Or(m.Batch, caddy.Duration(cfg.Hub.Batch))
	m.Queue = cmp.Or(m.Queue, cfg.Hub.Queue)
	m.History = cmp.Or(m.History, cfg.Hub.History)
	m.MaxSubscribers = cmp.Or(m.MaxSubscribers, cfg.Hub.MaxSubscribers)
	if err := m.Validate(); err != nil {
		return err
	}
	cfg.Root = m.Root
	cfg.Prefix = strings.TrimRight(m.Prefix, "/")
	cfg.Hub.Keepalive = time.Duration(m.Keepalive)
	cfg.Hub.Batch = time.Duration(m.Batch)
	cfg.Hub.Queue = m.Queue
	cfg.Hub.History = m.History
	cfg.Hub.MaxSubscribers = m.MaxSubscribers
	cfg.Logger = m.logger
	cfg.RouteError = routeError
	engine, err := notifier.New(cfg)
	if err != nil {
		return err
	}
	m.engine = engine
	m.end = newShutdownCloser(engine.Close)
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		ok, err := registerNotifyCollector(reg, newNotifyCollector(engine, m.Prefix))
		if err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
		if !ok {
			m.logger.Warn("another fs_notify handler watches the same root and prefix; only the first one's metrics are exported",
				zap.String("root", engine.Root()), zap.String("prefix", m.Prefix))
		}
	}
	m.logger.Info("watching for change notifications",
		zap.String("root", engine.Root()), zap.String("prefix", m.Prefix))
	return nil
}

// Validate rejects a configuration that cannot work. Provision calls it
// before it starts watching, once the defaults are filled in.
func (m *FSNotify) Validate() error {
	switch {
	case m.Root == "":
		return errors.New("root is required: the directory tree to watch")
	case !strings.HasPrefix(m.Prefix, "/"):
		return fmt.Errorf("prefix %q must begin with /", m.Prefix)
	case m.Keepalive <= 0:
		return fmt.Errorf("keepalive %s must be positive", time.Duration(m.Keepalive))
	case m.Batch <= 0:
		return fmt.Errorf("batch %s must be positive", time.Duration(m.Batch))
	case m.Queue < 1:
		return fmt.Errorf("queue %d must be at least 1", m.Queue)
	case m.History < 1:
		return fmt.Errorf("history %d must be at least 1", m.History)
	case m.MaxSubscribers < 1:
		return fmt.Errorf("max_subscribers %d must be at least 1", m.MaxSubscribers)
	}
	return nil
}

// Cleanup ends every stream and stops watching; it returns once every
// goroutine of the module has.
func (m *FSNotify) Cleanup() error {
	if m.engine == nil {
		return nil
	}
	return m.engine.Close()
}

// ServeHTTP streams notifications for <prefix>/<ref>/notify and passes
// every other request on.
func (m *FSNotify) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !m.engine.Match(r) {
		return next.ServeHTTP(w, r)
	}
	m.end.watch(r)
	return m.engine.Serve(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*FSNotify)(nil)
	_ caddy.Validator             = (*FSNotify)(nil)
	_ caddy.CleanerUpper          = (*FSNotify)(nil)
	_ caddyhttp.MiddlewareHandler = (*FSNotify)(nil)
)
