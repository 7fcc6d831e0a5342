package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zeebo/xxh3"
)

// Lock takes resource rk's write lock in Redis. It waits while another
// holder has it, woken when that holder releases it (or when its lease
// runs out), until ctx ends: ctx bounds the whole wait, and the lease is
// independent of it. Take the process's local lock first, so that one
// replica sends Redis at most one waiter per resource.
func (c *Client) Lock(ctx context.Context, rk xxh3.Uint128) (*Lease, error) {
	k := c.keys(rk)
	token := c.newLockToken()
	w := c.wake.register(k.id)
	defer c.wake.unregister(k.id, w)
	marked := false // an attempt found the lock held, and marked it wanted
	for {
		if err := c.boot.wait(ctx); err != nil {
			return nil, c.giveUp(k, token, marked, err)
		}
		sent := time.Now()
		got, err := c.tryAcquire(ctx, k, token)
		if err != nil {
			return nil, err
		}
		if got.held {
			// Redis told every mirror; this one hears it first.
			c.mirror.forget(rk)
			return c.newLease(k, token, got, sent), nil
		}
		// Another replica has it: this holder's release will go at once.
		// This replica's own holder may still have it, its release on
		// the way: that is no contention.
		if !c.ours(got.holder) {
			c.contend(k.id)
		}
		marked = true
		if err := w.wait(ctx, got.retryIn); err != nil {
			return nil, c.giveUp(k, token, marked, err)
		}
	}
}

// giveUp ends a Lock call that fails with err. A waiter that marked the
// resource wanted takes its mark back and gives back the lock a release
// may have handed it meanwhile.
func (c *Client) giveUp(k keys, token string, marked bool, err error) error {
	if marked {
		c.abandon(k, token)
	}
	return err
}

// acquired is the answer to one attempt at a lock.
type acquired struct {
	held    bool
	gen     uint64        // when held: the generation before this holder
	poison  uint64        // when held: the generation it set in Redis
	retryIn time.Duration // when not: the current holder's lease left
	holder  string        // when not: the current holder's token, or the waiter's the lock was handed to
}

// tryAcquire makes one attempt, in one round trip that also reads the
// boot marker (a Redis that lost its data grants no lock for one lease)
// and carries the releases pending.
func (c *Client) tryAcquire(ctx context.Context, k keys, token string) (acquired, error) {
	idKey, holdKey := c.bootKeys()
	poison := newGeneration()
	var acq *redis.Cmd
	var marker *redis.StringCmd
	var hold *redis.DurationCmd
	c.pipeline(ctx, c.take(), func(p redis.Pipeliner) {
		acq = acquireScript.EvalSha(ctx, p, []string{k.lock, k.gen, k.wanted},
			token, ms(c.lease), formatGeneration(poison), ms(generationTTL), c.changedChannel(), k.id)
		marker = p.Get(ctx, idKey)
		hold = p.PTTL(ctx, holdKey)
	})
	err := errors.Join(acq.Err(), hold.Err())
	if merr := marker.Err(); !errors.Is(merr, redis.Nil) {
		err = errors.Join(err, merr)
	}
	if err != nil {
		c.abandon(k, token)
		return acquired{}, c.unavailable(ctx, fmt.Errorf("taking the write lock: %w", err))
	}
	got, err := parseAcquired(acq)
	if err != nil {
		c.abandon(k, token)
		return acquired{}, c.unavailable(ctx, err)
	}
	got.poison = poison
	if c.boot.check(marker.Val(), hold.Val()) {
		return got, nil
	}
	// Redis started empty, or another replica saw it did: give back what
	// this attempt took, and wait out the hold.
	if got.held {
		c.abandon(k, token)
	}
	if marker.Val() == "" {
		if err := c.markBoot(ctx); err != nil {
			return acquired{}, err
		}
	}
	return acquired{}, nil
}

// newLockToken returns a lock holder's token, which names this replica
// first, so that a replica tells its own holders and waiters from others'.
func (c *Client) newLockToken() string { return c.id + "/" + newToken() }

// ours reports whether token is one of this replica's.
func (c *Client) ours(token string) bool { return strings.HasPrefix(token, c.id+"/") }

func parseAcquired(cmd *redis.Cmd) (acquired, error) {
	v, err := cmd.Slice()
	if err != nil || len(v) < 2 {
		return acquired{}, fmt.Errorf("taking the write lock: unexpected answer %v: %w", v, err)
	}
	if ok, _ := v[0].(int64); ok == 1 {
		s, _ := v[1].(string)
		gen, _ := parseGeneration(s)
		return acquired{held: true, gen: gen}, nil
	}
	pttl, _ := v[1].(int64)
	holder := ""
	if len(v) > 2 {
		holder, _ = v[2].(string)
		holder = strings.TrimPrefix(holder, "~") // handed to that waiter
	}
	return acquired{retryIn: time.Duration(pttl) * time.Millisecond, holder: holder}, nil
}

// release gives a lock back, leaving generation gen unless the one the
// holder set (poison) changed meanwhile, and wakes the waiters. It goes
// with the next round trip (see releaseDelay), or at once, before the
// caller hands the local lock on, when other replicas wait for the
// resource. It needs no request: the one that held the lock may be gone,
// and the lock must still be released.
// The holder's mirror keeps gen from now on, as the generation just left
// is current until another lock's message, which cannot overtake it; if
// Redis leaves another, the answer makes the mirror forget it.
func (c *Client) release(k keys, token string, gen, poison uint64, until time.Time) {
	_, seen := c.mirror.lookup(k.rk)
	c.mirror.store(k.rk, gen, seen)
	pr := &pendingRelease{k: k, token: token, gen: gen, poison: poison, until: until}
	if c.isContended(k.id) {
		c.send(c.ctx, []*pendingRelease{pr})
		return
	}
	c.queue(c.releaseAfter, pr)
}

// abandon releases a lock this process may hold without knowing it (an
// attempt whose answer was lost) or must not keep, leaving a generation no
// entry carries. Failing that, the lock expires with its lease.
func (c *Client) abandon(k keys, token string) {
	c.queue(c.releaseAfter, &pendingRelease{k: k, token: token, gen: newGeneration(), until: time.Now().Add(c.lease)})
}
