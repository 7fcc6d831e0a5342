package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Feed is a change feed's log in Redis: one capped Stream that every
// replica appends to and follows, so that every replica's feed carries
// every replica's writes. Ids are consecutive across the cluster; a new
// dataset (first use, or a Redis that lost its data) starts from Redis's
// clock in microseconds, so its ids are larger than any before and a
// follower sees the jump as a gap.
type Feed struct {
	c       *Client
	stream  string // entries with id "<n>-0", field "d" holding the payload
	last    string // the largest id given
	history int64
}

// Feed returns the log of the feed named name (one per feed path), which
// keeps about history payloads.
func (c *Client) Feed(name string, history int) *Feed {
	base := c.prefix + "{changes:" + name + "}:"
	return &Feed{c: c, stream: base + "stream", last: base + "last", history: int64(max(history, 1))}
}

// lastScript returns the largest id given, starting a new dataset from
// Redis's clock when there is none.
const lastScript = `
local last = redis.call('GET', KEYS[1])
if not last then
  local t = redis.call('TIME')
  last = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], last)
end
return last
`

var (
	startScript  = redis.NewScript(lastScript)
	appendScript = redis.NewScript(`
local last = tonumber((function()` + lastScript + `end)())
local id = string.format('%.0f', last + 1)
redis.call('SET', KEYS[1], id)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-0', 'd', ARGV[2])
return id
`)
)

// Last returns the largest id given so far.
func (f *Feed) Last(ctx context.Context) (uint64, error) {
	s, err := startScript.Run(ctx, f.c.rdb, []string{f.last}).Text()
	if err != nil {
		return 0, f.c.unavailable(ctx, fmt.Errorf("reading the change feed's last id: %w", err))
	}
	return strconv.ParseUint(s, 10, 64)
}

// Append adds a payload and returns its id, the previous id plus one.
func (f *Feed) Append(ctx context.Context, data []byte) (uint64, error) {
	s, err := appendScript.Run(ctx, f.c.rdb, []string{f.last, f.stream}, f.history, data).Text()
	if err != nil {
		return 0, f.c.unavailable(ctx, fmt.Errorf("appending to the change feed: %w", err))
	}
	return strconv.ParseUint(s, 10, 64)
}

// Follow calls fn with every payload appended after id after (0: after
// the last one now, once Redis answers), in order, until ctx ends. Ids it
// skips are payloads no longer kept (trimmed while the follower lagged or
// Redis was away, or lost with Redis's data): fn sees the gap in the ids.
func (f *Feed) Follow(ctx context.Context, after uint64, fn func(id uint64, data []byte)) error {
	// A blocked XREAD does not see its context end, so it runs on a
	// connection of its own, closed when ctx ends.
	rdb := redis.NewClient(f.c.followerOptions())
	stop := context.AfterFunc(ctx, func() { _ = rdb.Close() })
	defer func() {
		if stop() {
			_ = rdb.Close()
		}
	}()
	backoff := 50 * time.Millisecond
	pause := func(err error) bool {
		f.c.log.Debug("following the change feed failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, time.Second)
		return true
	}
	for after == 0 {
		last, err := f.Last(ctx)
		if err == nil {
			after = last
		} else if !pause(err) {
			return ctx.Err()
		}
	}
	for {
		res, err := rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{f.stream, streamID(after)},
			Count:   512,
			Block:   5 * time.Second,
		}).Result()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block time
		}
		if err != nil {
			if !pause(err) {
				return ctx.Err()
			}
			continue
		}
		backoff = 50 * time.Millisecond
		for _, s := range res {
			for _, m := range s.Messages {
				id := parseStreamID(m.ID)
				d, ok := m.Values["d"].(string)
				if id <= after || !ok {
					continue
				}
				fn(id, []byte(d))
				after = id
			}
		}
	}
}

func streamID(id uint64) string { return strconv.FormatUint(id, 10) + "-0" }

// parseStreamID reads the first part of a stream id; 0 for none.
func parseStreamID(s string) uint64 {
	if i := strings.IndexByte(s, '-'); i >= 0 {
		s = s[:i]
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
