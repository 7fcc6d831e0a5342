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

// Feed is the change feed's transport: one capped Redis Stream that every
// replica appends its writes to and follows, so that every replica's feed
// carries every replica's writes. Ids are Redis's clock in microseconds,
// made strictly increasing across the cluster by the append script, so a
// client may resume on any replica with its Last-Event-ID; they stay
// larger than any id from before a Redis that lost its data, which the
// feed then reports as lost.
type Feed struct {
	c       *Client
	stream  string // the entries, field "d" holding the payload
	meta    string // hash: last (largest id given), origin (first id of this dataset)
	history int64
}

// Event is one payload of the feed. Lost instead says that payloads before
// the next one may be missing (trimmed from history, or lost with Redis's
// data): the client must resynchronise.
type Event struct {
	ID   uint64
	Data []byte
	Lost bool
}

// appendScript adds ARGV[2] with the next id, tagged with the dataset's
// origin (the first id it gave), and caps the stream at about ARGV[1]
// entries.
var appendScript = redis.NewScript(`
local t = redis.call('TIME')
local id = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
if id <= last then
  id = last + 1
end
local s = string.format('%.0f', id)
redis.call('HSETNX', KEYS[2], 'origin', s)
local origin = redis.call('HGET', KEYS[2], 'origin')
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], s .. '-0', 'd', ARGV[2], 'o', origin)
redis.call('HSET', KEYS[2], 'last', s)
return s
`)

// Feed returns the transport of the feed named name (one per feed path),
// keeping about history payloads in Redis.
func (c *Client) Feed(name string, history int) *Feed {
	base := c.prefix + "{changes:" + name + "}:"
	return &Feed{c: c, stream: base + "stream", meta: base + "meta", history: int64(max(history, 1))}
}

// Append adds a payload and returns its id.
func (f *Feed) Append(ctx context.Context, data []byte) (uint64, error) {
	s, err := appendScript.Run(ctx, f.c.rdb, []string{f.stream, f.meta}, f.history, data).Text()
	if err != nil {
		return 0, f.c.unavailable(ctx, fmt.Errorf("appending to the change feed: %w", err))
	}
	return strconv.ParseUint(s, 10, 64)
}

// Since returns the payloads after id after, oldest first, with lost set
// when some payload after it may no longer be kept: after predates the
// dataset (Redis lost its data since), or the entry after names was
// trimmed along with whatever followed it.
func (f *Feed) Since(ctx context.Context, after uint64) (events []Event, lost bool, err error) {
	var origin *redis.StringCmd
	var first, rng *redis.XMessageSliceCmd
	_, err = f.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		origin = p.HGet(ctx, f.meta, "origin")
		first = p.XRangeN(ctx, f.stream, "-", "+", 1)
		rng = p.XRange(ctx, f.stream, streamID(after), "+") // from after itself
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, f.c.unavailable(ctx, fmt.Errorf("reading the change feed's history: %w", err))
	}
	o, oerr := strconv.ParseUint(origin.Val(), 10, 64)
	msgs := rng.Val()
	kept := len(msgs) > 0 && parseStreamID(msgs[0].ID) == after
	if kept {
		msgs = msgs[1:]
	}
	lost = oerr != nil || after < o || !kept && trimmedPast(first.Val(), after)
	for _, m := range msgs {
		if e, ok := parseEntry(m); ok {
			events = append(events, e.Event)
		}
	}
	return events, lost, nil
}

// trimmedPast reports whether id, absent from the stream, is older than
// its first entry: it was trimmed, and so perhaps were entries after it.
func trimmedPast(first []redis.XMessage, id uint64) bool {
	return len(first) == 0 || id < parseStreamID(first[0].ID)
}

// Follow calls fn with every payload appended after id after (0: after the
// newest now), in order, until ctx ends. It says with a Lost event when
// payloads it had not delivered are gone: trimmed while it lagged or
// Redis was away, or lost with Redis's data (the entries' origin changes).
func (f *Feed) Follow(ctx context.Context, after uint64, fn func(Event)) error {
	const batch = 512
	pos, err := f.position(ctx, after)
	for err != nil {
		f.c.log.Debug("change feed unreachable; retrying", zap.Error(err))
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
		pos, err = f.position(ctx, after)
	}
	// A blocked XREAD does not see its context end, so it runs on a
	// connection of its own, closed when ctx ends.
	rdb := redis.NewClient(f.c.followerOptions())
	stop := context.AfterFunc(ctx, func() { _ = rdb.Close() })
	defer func() {
		if stop() {
			_ = rdb.Close()
		}
	}()
	told := false // a Lost was delivered and no payload since
	lose := func() {
		if !told {
			fn(Event{Lost: true})
			told = true
		}
	}
	check := false
	backoff := 50 * time.Millisecond
	for {
		if check {
			switch lost, err := f.trimmed(ctx, pos.last); {
			case err != nil:
				// Still unreachable: the XREAD below fails too and backs off.
			case lost:
				lose()
				check = false
			default:
				check = false
			}
		}
		res, err := rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{f.stream, streamID(pos.last)},
			Count:   batch,
			Block:   5 * time.Second,
		}).Result()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block time
		}
		if err != nil {
			f.c.log.Debug("following the change feed failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, time.Second)
			check = pos.last != 0
			continue
		}
		backoff = 50 * time.Millisecond
		n := 0
		for _, s := range res {
			for _, m := range s.Messages {
				n++
				e, ok := parseEntry(m)
				if !ok {
					continue
				}
				if e.origin != pos.origin {
					if pos.origin != "" {
						lose() // a new dataset: the old one's tail is gone
					}
					pos.origin = e.origin
				}
				fn(e.Event)
				told = false
				pos.last = e.ID
			}
		}
		check = check || n >= batch
	}
}

// position is where a follower stands: the last id it delivered and the
// dataset that id came from.
type position struct {
	last   uint64
	origin string
}

// position resolves after 0 to the newest id, and reads the origin.
func (f *Feed) position(ctx context.Context, after uint64) (position, error) {
	v, err := f.c.rdb.HMGet(ctx, f.meta, "last", "origin").Result()
	if err != nil {
		return position{}, f.c.unavailable(ctx, err)
	}
	last, _ := v[0].(string)
	origin, _ := v[1].(string)
	p := position{last: after, origin: origin}
	if after == 0 {
		p.last, _ = strconv.ParseUint(last, 10, 64)
	}
	return p, nil
}

// trimmed reports whether entries after last may have been trimmed before
// the follower read them.
func (f *Feed) trimmed(ctx context.Context, last uint64) (bool, error) {
	var first, at *redis.XMessageSliceCmd
	_, err := f.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		first = p.XRangeN(ctx, f.stream, "-", "+", 1)
		at = p.XRangeN(ctx, f.stream, streamID(last), streamID(last), 1)
		return nil
	})
	if err != nil {
		return false, err
	}
	return len(at.Val()) == 0 && trimmedPast(first.Val(), last), nil
}

// entry is an Event with the origin of its dataset.
type entry struct {
	Event
	origin string
}

func parseEntry(m redis.XMessage) (entry, bool) {
	id := parseStreamID(m.ID)
	d, ok := m.Values["d"].(string)
	if id == 0 || !ok {
		return entry{}, false
	}
	o, _ := m.Values["o"].(string)
	return entry{Event: Event{ID: id, Data: []byte(d)}, origin: o}, true
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
