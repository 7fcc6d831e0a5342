package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Releases travel with the next command this process sends Redis: a lock
// and its release then cost one round trip between them, not two, since
// on this path a round trip's syscalls cost Redis and the gateway more
// than the scripts do. A release that finds no command to ride within
// releaseDelay goes alone. Meanwhile the lock stays held in Redis, which
// is safe: the write is done, other replicas' reads go without the cache
// while it is held, and their writes wait for it.
//
// A resource that other replicas wait for is released at once instead:
// its release hands the lock to their waiter (see releaseScript), which
// should not wait for this process's next command to carry it.
const releaseDelay = time.Millisecond

// handoffFor is how long a release keeps the lock for the waiter it hands
// it to (at most a lease): long enough for the woken waiter to take it, a
// bound on how long one that is gone meanwhile blocks the others.
const handoffFor = 500 * time.Millisecond

// contendedFor is how long a resource counts as contended after a lock of
// it had to wait or a release of it woke other replicas' waiters;
// contendedMax bounds how many are remembered.
const (
	contendedFor = time.Second
	contendedMax = 4096
)

// After a failed flush the next waits this long, while the leases of the
// releases still run.
const releaseRetry = 100 * time.Millisecond

// pendingRelease is a release on its way to Redis.
type pendingRelease struct {
	k      keys
	token  string
	gen    uint64    // the generation the holder leaves
	poison uint64    // the one it set when it took the lock; 0 for none
	until  time.Time // the lease's end: past it the release is moot
}

// releases queues this process's pending releases.
type releases struct {
	mu      sync.Mutex
	pending []*pendingRelease
	armed   bool // a flush is scheduled
	timer   *time.Timer
	// contended: resources (keys.id) other replicas held or waited for
	// lately, until when they count as contended (contendedFor).
	contended map[string]time.Time
}

// isContended reports whether other replicas held or waited for resource
// id lately.
func (c *Client) isContended(id string) bool {
	r := &c.releases
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.contended[id]
	return ok && time.Now().Before(until)
}

// contend marks resource id contended.
func (c *Client) contend(id string) {
	r := &c.releases
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.contended == nil || len(r.contended) >= contendedMax {
		r.contended = make(map[string]time.Time)
	}
	r.contended[id] = time.Now().Add(contendedFor)
}

// queue adds a release and makes sure a flush follows within d.
func (c *Client) queue(d time.Duration, prs ...*pendingRelease) {
	if len(prs) == 0 {
		return
	}
	r := &c.releases
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, prs...)
	if r.armed {
		return
	}
	r.armed = true
	if r.timer == nil {
		r.timer = time.AfterFunc(d, c.flushReleases)
	} else {
		r.timer.Reset(d)
	}
}

// take removes every pending release, for a round trip to carry.
func (c *Client) take() []*pendingRelease {
	r := &c.releases
	r.mu.Lock()
	defer r.mu.Unlock()
	prs := r.pending
	r.pending = nil
	return prs
}

// carry adds prs to pipeline p, ahead of the commands that carry them, so
// that a lock this process releases and takes again is free by then.
func (c *Client) carry(ctx context.Context, p redis.Pipeliner, prs []*pendingRelease) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(prs))
	for i, pr := range prs {
		cmds[i] = releaseScript.EvalSha(ctx, p, []string{pr.k.lock, pr.k.gen, pr.k.wanted},
			pr.token, formatGeneration(pr.gen), ms(generationTTL), c.releasedChannel(), pr.k.id,
			formatGeneration(pr.poison), formatGeneration(newGeneration()), ms(min(c.lease, handoffFor)))
	}
	return cmds
}

// settle reads the answers to carried releases. A release that failed is
// queued again while its lease runs; it is safe to run twice, since it
// checks the holder's token. When only the command that carried them
// gave up (carried, and its ctx ended), they go on at once.
func (c *Client) settle(ctx context.Context, carried bool, prs []*pendingRelease, cmds []*redis.Cmd) {
	var retry []*pendingRelease
	var firstErr error
	now := time.Now()
	for i, pr := range prs {
		v, err := cmds[i].Slice()
		var left string
		if err == nil && len(v) == 2 {
			left, _ = v[0].(string)
			// This replica's own writer may have found the lock still
			// held, with its release on the way: that is no contention.
			if by, _ := v[1].(string); by != "" && !c.ours(by) {
				c.contend(pr.k.id)
			}
		}
		if err != nil && !isNoScript(err) && firstErr == nil {
			firstErr = err
		}
		if err != nil && now.Before(pr.until) {
			retry = append(retry, pr)
			continue
		}
		// A holder whose lease ended gets 0, not a generation; one whose
		// generation a lockless write replaced gets a fresh one.
		if g, ok := parseGeneration(left); err != nil || !ok || g != pr.gen {
			c.mirror.forget(pr.k.rk)
		}
	}
	if carried && ctx.Err() != nil && c.ctx.Err() == nil {
		c.queue(c.releaseAfter, retry...)
		return
	}
	if firstErr != nil {
		c.log.Warn("releasing write locks failed; retrying while their leases run (other replicas wait meanwhile)",
			zap.Int("locks", len(prs)), zap.Error(firstErr))
	}
	c.queue(releaseRetry, retry...)
}

// flushReleases sends the pending releases on their own, run by the
// timer when no other round trip carried them.
func (c *Client) flushReleases() {
	if !c.enter() {
		return // Close flushes
	}
	defer c.wg.Done()
	c.releases.mu.Lock()
	c.releases.armed = false
	c.releases.mu.Unlock()
	c.flush(c.ctx)
}

// flush sends the pending releases and waits for their answers.
func (c *Client) flush(ctx context.Context) { c.send(ctx, c.take()) }

// send sends releases prs alone and waits for their answers.
func (c *Client) send(ctx context.Context, prs []*pendingRelease) {
	if len(prs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.lease, 3*time.Second))
	defer cancel()
	c.pipeline(ctx, prs, nil)
}

// pipeline runs fn's commands (if any) in one round trip, after the
// releases prs, and settles the releases; the caller reads its commands'
// own answers.
// When Redis has lost the scripts (a restart, SCRIPT FLUSH) it loads them
// and runs the round trip again.
func (c *Client) pipeline(ctx context.Context, prs []*pendingRelease, fn func(redis.Pipeliner)) {
	var rel []*redis.Cmd
	run := func() ([]redis.Cmder, error) {
		return c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			rel = c.carry(ctx, p, prs)
			if fn != nil {
				fn(p)
			}
			return nil
		})
	}
	cmds, _ := run()
	if noScript(cmds) {
		if err := loadScripts(ctx, c.rdb); err == nil {
			_, _ = run()
		}
	}
	if len(prs) > 0 {
		c.settle(ctx, fn != nil, prs, rel)
	}
}

func noScript(cmds []redis.Cmder) bool {
	for _, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			return true
		}
	}
	return false
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// stopReleases cancels the scheduled flush, for Close, which flushes
// itself.
func (c *Client) stopReleases() {
	c.releases.mu.Lock()
	defer c.releases.mu.Unlock()
	if c.releases.timer != nil {
		c.releases.timer.Stop()
	}
	c.releases.armed = false
}
