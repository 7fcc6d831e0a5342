package caddymodule

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/etaggate/etaggate/cluster"
	"github.com/etaggate/etaggate/feed"
	"github.com/etaggate/etaggate/sse"
)

// Changes serves a change feed of the resources written through the etag
// handler: `GET <path>` streams, as server-sent events in fs_notify's
// framing, a `resource_created`, `resource_updated` or `resource_removed`
// for every POST, PUT, PATCH or DELETE that got a 2xx, enforced or not.
// The feed's own requests are never cached, tagged or locked. A field
// left out, or 0, takes its default.
type Changes struct {
	// The URL path the feed is served at, such as `/changes`. It must be
	// one that reaches the etag handler. Required.
	Path string `json:"path,omitempty"`

	// Interval of the comment lines that keep an idle stream open through
	// proxies. Default: 15s.
	Keepalive caddy.Duration `json:"keepalive,omitempty"`

	// How long changes are gathered into one event. Default: 50ms.
	Batch caddy.Duration `json:"batch,omitempty"`

	// The events a subscriber may have waiting before it is sent
	// `event: overflow` and disconnected. Default: 1024.
	Queue int `json:"queue,omitempty"`

	// The number of recent events kept to replay to a client reconnecting
	// with `Last-Event-ID`. Default: 4096.
	History int `json:"history,omitempty"`

	// The most streams open at once; more are refused with 503.
	// Default: 10000.
	MaxSubscribers int `json:"max_subscribers,omitempty"`
}

// provision fills in the defaults and starts the feed, through the
// cluster's Redis when redis is not nil.
func (c *Changes) provision(log *zap.Logger, redis *cluster.Client) (*feed.Feed, error) {
	hub := sse.DefaultConfig()
	c.Keepalive = cmp.Or(c.Keepalive, caddy.Duration(hub.Keepalive))
	c.Batch = cmp.Or(c.Batch, caddy.Duration(hub.Batch))
	c.Queue = cmp.Or(c.Queue, hub.Queue)
	c.History = cmp.Or(c.History, hub.History)
	c.MaxSubscribers = cmp.Or(c.MaxSubscribers, hub.MaxSubscribers)
	if err := c.validate(); err != nil {
		return nil, err
	}
	hub.Keepalive = time.Duration(c.Keepalive)
	hub.Batch = time.Duration(c.Batch)
	hub.Queue = c.Queue
	hub.History = c.History
	hub.MaxSubscribers = c.MaxSubscribers
	hub.Logger = log
	return feed.New(feed.Config{Path: c.Path, Hub: hub, RouteError: routeError}, feedTransport(redis, c.Path, c.History))
}

// validate checks the values; 0 stands for the default.
func (c *Changes) validate() error {
	switch {
	case !strings.HasPrefix(c.Path, "/"):
		return fmt.Errorf("changes: path %q must begin with /, such as /changes", c.Path)
	case c.Keepalive < 0:
		return fmt.Errorf("changes: keepalive %s must be positive", time.Duration(c.Keepalive))
	case c.Batch < 0:
		return fmt.Errorf("changes: batch %s must be positive", time.Duration(c.Batch))
	case c.Queue < 0:
		return fmt.Errorf("changes: queue %d must be at least 1", c.Queue)
	case c.History < 0:
		return fmt.Errorf("changes: history %d must be at least 1", c.History)
	case c.MaxSubscribers < 0:
		return fmt.Errorf("changes: max_subscribers %d must be at least 1", c.MaxSubscribers)
	}
	return nil
}
