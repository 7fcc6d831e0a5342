package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zeebo/xxh3"
)

// ErrLocked says a resource is being written somewhere in the cluster:
// until the write ends, its cache entries are neither trusted nor filled.
var ErrLocked = errors.New("the resource is locked for a write")

// readTimeout bounds a read's generation lookup, so that a Redis that
// hangs slows reads by at most this much before they go on without the
// cache.
const readTimeout = time.Second

// Generation returns resource rk's generation for a read: a cache entry
// is current while it carries this value, and a read that began now may
// fill the cache with it. Every write through any replica changes it
// before the write is forwarded, and again when it ends. The answer comes
// from the mirror when it knows rk, which costs no round trip.
func (c *Client) Generation(ctx context.Context, rk xxh3.Uint128) (uint64, error) {
	gen, seen := c.mirror.lookup(rk)
	if gen != 0 {
		return gen, nil
	}
	if c.down() {
		return 0, fmt.Errorf("%w: it failed less than a second ago", ErrUnavailable)
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	k := c.keys(rk)
	var cmd *redis.Cmd
	c.pipeline(rctx, c.take(), func(p redis.Pipeliner) {
		cmd = generationScript.EvalSha(rctx, p, []string{k.lock, k.gen},
			formatGeneration(newGeneration()), ms(generationTTL))
	})
	s, err := cmd.Text()
	if errors.Is(err, redis.Nil) {
		return 0, ErrLocked
	}
	if err != nil {
		return 0, c.unavailable(ctx, fmt.Errorf("reading the cache generation: %w", err))
	}
	gen, ok := parseGeneration(s)
	if ok {
		c.mirror.store(rk, gen, seen)
	}
	return gen, nil
}

// Invalidate gives rk a new generation at once, for a write that takes no
// lock: every replica's entries of rk are void from now on. A lock held
// meanwhile then leaves a fresh generation, not its own.
func (c *Client) Invalidate(ctx context.Context, rk xxh3.Uint128) error {
	k := c.keys(rk)
	c.mirror.forget(rk)
	err := invalidateScript.Run(ctx, c.rdb, []string{k.gen},
		formatGeneration(newGeneration()), ms(generationTTL), c.changedChannel(), k.id).Err()
	c.mirror.forget(rk)
	if err != nil {
		return c.unavailable(ctx, fmt.Errorf("invalidating the shared cache generation: %w", err))
	}
	return nil
}
