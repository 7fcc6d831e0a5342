// Package cluster coordinates several etaggate replicas through Redis (or
// Valkey): per-resource write locks with a renewed lease, the generations
// that keep every replica's ETag cache honest, and a change feed shared
// by all replicas. It is plain Go with no Caddy import; the engine sees it
// through small interfaces.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultPrefix = "etaggate:"
	DefaultLease  = 15 * time.Second
	// MinLease is the shortest lease accepted: renewal needs a few round
	// trips of room inside it.
	MinLease = 500 * time.Millisecond
)

// ErrUnavailable wraps every failure to reach Redis: the engine answers
// 503 with Retry-After and forwards nothing that needed a lock.
var ErrUnavailable = errors.New("redis unavailable")

// Options configures a Client.
type Options struct {
	// Address is host:port, or a redis:// or rediss:// URL.
	Address  string
	Password string
	// Prefix starts every key; default DefaultPrefix. It must not contain
	// braces, which would change the keys' hash slots.
	Prefix string
	// Lease is how long a write lock lives without renewal; default
	// DefaultLease.
	Lease  time.Duration
	Logger *zap.Logger
}

// Client is one process's connection pool to Redis, with the subscription
// that wakes lock waiters and keeps the mirror of generations. It is safe
// for concurrent use; Close stops it.
type Client struct {
	rdb    *redis.Client
	opts   *redis.Options // as given to rdb, for connections of their own
	id     string         // this replica's, random: its lock tokens start with it
	prefix string
	lease  time.Duration
	margin time.Duration // a lease is given up this long before it ends
	log    *zap.Logger

	wake     *wakeup
	sub      *subscription
	mirror   *mirror
	boot     bootState
	releases releases
	// releaseAfter is how long a release waits for a round trip to ride;
	// releaseDelay but in tests.
	releaseAfter time.Duration

	// downUntil (Unix nanoseconds) skips Redis for reads for a moment
	// after a failure, so that reads do not each wait for a dead server.
	downUntil atomic.Int64

	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	mu      sync.Mutex // guards closing against wg.Add
	closing bool
	wg      sync.WaitGroup
	closed  sync.Once
}

// Open validates opts and connects lazily: Open succeeds while Redis is
// down, and writes answer 503 until it is back.
func Open(opts Options) (*Client, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("prefix %q contains a brace; braces choose a key's Redis Cluster hash slot, so leave them out", opts.Prefix)
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.Lease < MinLease {
		return nil, fmt.Errorf("lease %s is shorter than %s; give a duration such as 15s", opts.Lease, MinLease)
	}
	ro, err := redisOptions(opts.Address, opts.Password)
	if err != nil {
		return nil, err
	}
	c := &Client{
		rdb:    redis.NewClient(ro),
		opts:   ro,
		id:     newToken(),
		prefix: opts.Prefix,
		lease:  opts.Lease,
		margin: opts.Lease / 5,
		log:    opts.Logger,

		releaseAfter: releaseDelay,
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wake = newWakeup()
	c.mirror = new(mirror)
	c.sub = &subscription{c: c}
	c.track(c.sub.run)
	return c, nil
}

// redisOptions turns an address into go-redis options with timeouts fit
// for a lock on the request path.
func redisOptions(address, password string) (*redis.Options, error) {
	if address == "" {
		return nil, errors.New("no redis address: give host:port or a redis:// URL")
	}
	var ro *redis.Options
	if strings.Contains(address, "://") {
		var err error
		if ro, err = redis.ParseURL(address); err != nil {
			return nil, fmt.Errorf("redis address %q: %w", address, err)
		}
	} else {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return nil, fmt.Errorf("redis address %q is neither host:port nor a redis:// URL: %w", address, err)
		}
		ro = &redis.Options{Addr: address}
	}
	if password != "" {
		ro.Password = password
	}
	ro.DialTimeout = 2 * time.Second
	ro.ReadTimeout = 3 * time.Second
	ro.WriteTimeout = 3 * time.Second
	ro.ContextTimeoutEnabled = true // a request's deadline bounds its commands
	ro.MaxRetries = 1
	ro.DialerRetries = 1
	ro.PoolSize = 64
	ro.DisableIdentity = true // no CLIENT SETINFO round trip on each new connection
	// RESP2: with RESP3, go-redis reads the socket for push notifications
	// before every command, a system call per round trip for nothing this
	// package uses.
	ro.Protocol = 2
	return ro, nil
}

// followerOptions are those of a client with one connection, for a
// blocking reader that must be stopped by closing it.
func (c *Client) followerOptions() *redis.Options {
	o := *c.opts
	o.PoolSize = 1
	o.MaxRetries = -1
	return &o
}

// Lease is the configured lease.
func (c *Client) Lease() time.Duration { return c.lease }

// Ping checks that Redis answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return c.unavailable(ctx, err)
	}
	return nil
}

// Close stops the client's goroutines and closes its connections.
func (c *Client) Close() error {
	var err error
	c.closed.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		// Locks released until now reach Redis; a release after Close
		// expires with its lease.
		c.stopReleases()
		c.flush(context.Background())
		c.cancel()
		c.sub.close()
		c.wg.Wait()
		err = c.rdb.Close()
	})
	return err
}

// track runs f in a goroutine that Close waits for, unless the client is
// closing.
func (c *Client) track(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Go(f)
	return true
}

// enter counts a goroutine that Close waits for, unless the client is
// closing; the goroutine calls c.wg.Done when it ends.
func (c *Client) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	return true
}

// unavailable wraps a Redis failure as ErrUnavailable and marks Redis down
// for reads for a moment. When ctx has ended, its own error is returned
// instead: the caller gave up, which says nothing about Redis.
func (c *Client) unavailable(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.downUntil.Store(time.Now().Add(time.Second).UnixNano())
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// down reports whether Redis failed less than a second ago.
func (c *Client) down() bool { return time.Now().UnixNano() < c.downUntil.Load() }
