package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/etaggate/etaggate/cluster"
	"github.com/etaggate/etaggate/feed"
	"github.com/etaggate/etaggate/proxy"
	"github.com/etaggate/etaggate/sse"
)

func init() {
	caddy.RegisterModule(Cluster{})
}

// Cluster is the etaggate app: with redis configured, every etag handler
// of the process coordinates with the other replicas through Redis (or
// Valkey), so that writes stay serialised and cached ETags stay current
// across all of them.
type Cluster struct {
	// Redis is the server the replicas share.
	Redis *RedisConfig `json:"redis,omitempty"`

	client  *cluster.Client
	poolKey string
}

// RedisConfig says how to reach Redis.
type RedisConfig struct {
	// Address is host:port, or a redis:// or rediss:// URL.
	Address string `json:"address,omitempty"`

	// Password authenticates to Redis; placeholders such as
	// {env.REDIS_PASSWORD} are replaced. Optional.
	Password string `json:"password,omitempty"`

	// Prefix starts every key etaggate writes. Default: etaggate:. Replicas
	// that share a prefix share their locks, so give each cluster its own.
	Prefix string `json:"prefix,omitempty"`

	// Lease is how long a write lock lives in Redis without renewal; it is
	// renewed every third of it while the write runs. A replica that dies
	// holding a lock blocks that resource for at most one lease. Default:
	// 15s.
	Lease caddy.Duration `json:"lease,omitempty"`
}

// redisPools holds one Redis client per configuration. A reload
// provisions the new app before it cleans up the old one, so a client
// whose configuration did not change, and the waits and leases it carries,
// survive the hand-over.
var redisPools = caddy.NewUsagePool()

type pooledClient struct{ *cluster.Client }

func (p pooledClient) Destruct() error { return p.Close() }

// CaddyModule returns the Caddy module information.
func (Cluster) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "etaggate",
		New: func() caddy.Module { return new(Cluster) },
	}
}

// options returns the client options, with placeholders replaced and
// defaults filled in.
func (a *Cluster) options() (cluster.Options, error) {
	r := a.Redis
	if r.Address == "" {
		return cluster.Options{}, errors.New("redis: no address; give host:port or a redis:// URL")
	}
	if r.Lease < 0 {
		return cluster.Options{}, fmt.Errorf("redis lease: %s is negative; give a duration such as 15s", time.Duration(r.Lease))
	}
	if r.Lease > 0 && time.Duration(r.Lease) < cluster.MinLease {
		return cluster.Options{}, fmt.Errorf("redis lease: %s is shorter than %s; give a duration such as 15s", time.Duration(r.Lease), cluster.MinLease)
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		return cluster.Options{}, fmt.Errorf("redis prefix: %q contains a brace; braces choose a key's hash slot in Redis Cluster, so leave them out", r.Prefix)
	}
	repl := caddy.NewReplacer()
	return cluster.Options{
		Address:  repl.ReplaceAll(r.Address, ""),
		Password: repl.ReplaceAll(r.Password, ""),
		Prefix:   r.Prefix,
		Lease:    time.Duration(r.Lease),
		Logger:   caddy.Log().Named("etaggate.cluster"),
	}, nil
}

// Provision takes the process's client for this configuration, creating
// it on first use. It connects lazily: Caddy starts while Redis is down.
func (a *Cluster) Provision(caddy.Context) error {
	if a.Redis == nil {
		return nil
	}
	opts, err := a.options()
	if err != nil {
		return err
	}
	key := strings.Join([]string{opts.Address, opts.Password, opts.Prefix, time.Duration(a.Redis.Lease).String()}, "\x00")
	v, _, err := redisPools.LoadOrNew(key, func() (caddy.Destructor, error) {
		c, err := cluster.Open(opts)
		return pooledClient{c}, err
	})
	if err != nil {
		return err
	}
	a.client, a.poolKey = v.(pooledClient).Client, key
	return nil
}

// Validate checks the configuration once.
func (a *Cluster) Validate() error {
	if a.Redis == nil {
		return nil
	}
	_, err := a.options()
	return err
}

// Start tells the operator at once when Redis does not answer; writes
// answer 503 until it does.
func (a *Cluster) Start() error {
	if a.client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.client.Ping(ctx); err != nil {
		caddy.Log().Named("etaggate.cluster").Warn("Redis does not answer; writes that need a lock answer 503 until it does",
			zap.String("address", a.Redis.Address), zap.Error(err))
	}
	return nil
}

// Stop does nothing: the client lives until Cleanup releases it.
func (a *Cluster) Stop() error { return nil }

// Cleanup releases the client; the last configuration using it closes it.
func (a *Cluster) Cleanup() error {
	if a.poolKey != "" {
		_, _ = redisPools.Delete(a.poolKey)
		a.poolKey, a.client = "", nil
	}
	return nil
}

// Client is the Redis client the etag handlers coordinate through, nil
// without redis.
func (a *Cluster) Client() *cluster.Client { return a.client }

// clusterClient returns the etaggate app's Redis client, nil when no
// redis is configured.
func clusterClient(ctx caddy.Context) (*cluster.Client, error) {
	app, err := ctx.AppIfConfigured("etaggate")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return app.(*Cluster).Client(), nil
}

// engineCluster is c as the engine sees it; nil for a gateway alone.
func engineCluster(c *cluster.Client) proxy.Cluster {
	if c == nil {
		return nil
	}
	return cluster.Engine{Client: c}
}

// feedTransport carries the change feed at path through Redis, so that
// every replica's feed carries every replica's writes; nil keeps the feed
// to this process. Feeds at the same path share one stream in the cluster.
func feedTransport(c *cluster.Client, path string, history int) sse.Transport[feed.Change] {
	if c == nil {
		return nil
	}
	return cluster.NewTransport[feed.Change](c.Feed(path, history))
}

// Interface guards.
var (
	_ caddy.App          = (*Cluster)(nil)
	_ caddy.Provisioner  = (*Cluster)(nil)
	_ caddy.Validator    = (*Cluster)(nil)
	_ caddy.CleanerUpper = (*Cluster)(nil)
)
