package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// bootState follows the marker that says which Redis dataset this process
// is talking to. A Redis without persistence restarts empty: every lock
// it held is forgotten while their writes may still be in flight, so no
// lock is granted until one lease has passed and every such holder has
// given up (its renewal fails, and it stops at lease − margin).
type bootState struct {
	mu        sync.Mutex
	marker    string    // the marker seen last; "" before the first attempt
	holdUntil time.Time // no lock before this
}

// ErrRecovering is the refusal of a lock while Redis recovers from losing
// its data; it wraps ErrUnavailable.
var ErrRecovering = fmt.Errorf("%w: Redis lost its data (restarted empty) and grants no write lock for one lease, until every lock it forgot has expired", ErrUnavailable)

// check records the marker and hold read with a lock attempt and reports
// whether the attempt may stand.
func (b *bootState) check(marker string, hold time.Duration) bool {
	if marker == "" {
		return false // missing: the caller marks the dataset
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if marker == b.marker {
		return true
	}
	// A marker this process has not seen: it just started, or Redis lost
	// its data and another replica marked it. While that replica's hold
	// lasts, no lock; after it, this process's own leases are long lost.
	b.marker = marker
	if hold > 0 {
		b.holdUntil = time.Now().Add(hold)
		return false
	}
	return true
}

// wait waits out the hold, or fails at once when ctx would end first.
func (b *bootState) wait(ctx context.Context) error {
	b.mu.Lock()
	left := time.Until(b.holdUntil)
	b.mu.Unlock()
	if left <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < left {
		return ErrRecovering
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// markBoot marks an empty Redis and starts its hold, unless another
// replica did first; either way this process adopts the marker and hold.
func (c *Client) markBoot(ctx context.Context) error {
	idKey, holdKey := c.bootKeys()
	v, err := bootScript.Run(ctx, c.rdb, []string{idKey, holdKey},
		strconv.FormatUint(newGeneration(), 36), ms(c.lease)).Slice()
	if err != nil || len(v) != 2 {
		if err == nil {
			err = fmt.Errorf("unexpected answer %v", v)
		}
		return c.unavailable(ctx, fmt.Errorf("marking the Redis dataset: %w", err))
	}
	marker, _ := v[0].(string)
	pttl, _ := v[1].(int64)
	c.boot.mu.Lock()
	c.boot.marker = marker
	if pttl > 0 {
		c.boot.holdUntil = time.Now().Add(time.Duration(pttl) * time.Millisecond)
		c.log.Warn("Redis started empty: no write lock is granted for one lease", zap.Duration("hold", time.Duration(pttl)*time.Millisecond))
	}
	c.boot.mu.Unlock()
	return nil
}
