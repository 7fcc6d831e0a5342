package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/sse"
)

// Transport carries an sse hub's frames through a Feed, so that the hubs
// of every replica number their frames alike and each delivers every
// replica's: the clustered sse.Transport. Notifications travel as JSON.
type Transport[N any] struct {
	feed *Feed
	// lostSend is set when a frame could not be appended: the frames of
	// that moment reached no replica, which the next frame sent says.
	lostSend atomic.Bool
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

// NewTransport returns the transport of feed.
func NewTransport[N any](feed *Feed) *Transport[N] { return &Transport[N]{feed: feed} }

// wireFrame is a frame as it is stored in the stream.
type wireFrame[N any] struct {
	Notifications []N    `json:"n,omitempty"`
	Overflow      string `json:"o,omitempty"`
	Scope         *N     `json:"s,omitempty"`
}

// Open starts following the feed from its last id and returns that id.
// With Redis away, the hub starts at 0 and the follower at the last id it
// finds once Redis answers; the jump in ids delivers an overflow.
func (t *Transport[N]) Open(deliver func(*sse.Frame[N])) (uint64, error) {
	ctx, cancel := context.WithCancel(t.feed.c.ctx)
	t.cancel = cancel
	octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
	last, err := t.feed.Last(octx)
	ocancel()
	if err != nil {
		t.feed.c.log.Warn("change feed: Redis unreachable; following it once it answers", zap.Error(err))
		last = 0
	}
	t.done.Add(1)
	go func() {
		defer t.done.Done()
		t.follow(ctx, last, deliver)
	}()
	return last, nil
}

// follow delivers the feed's frames in id order. A gap in the ids (frames
// no longer kept, or a new dataset) is delivered as an overflow frame
// numbered just before the next one, so the hub's streams and its history
// say so.
func (t *Transport[N]) follow(ctx context.Context, last uint64, deliver func(*sse.Frame[N])) {
	_ = t.feed.Follow(ctx, last, func(id uint64, data []byte) {
		if id != last+1 {
			deliver(&sse.Frame[N]{ID: id - 1, Overflow: sse.ReasonHistory})
		}
		last = id
		var w wireFrame[N]
		if err := json.Unmarshal(data, &w); err != nil {
			t.feed.c.log.Error("change feed: an entry that is not a frame", zap.Uint64("id", id), zap.Error(err))
			deliver(&sse.Frame[N]{ID: id, Overflow: sse.ReasonHistory})
			return
		}
		deliver(&sse.Frame[N]{ID: id, Notifications: w.Notifications, Overflow: w.Overflow, Scope: w.Scope})
	})
}

// Send appends f to the feed; every replica's hub, this one included,
// gets it from there. After a failed Send, an overflow goes first.
func (t *Transport[N]) Send(f *sse.Frame[N]) error {
	ctx, cancel := context.WithTimeout(t.feed.c.ctx, 3*time.Second)
	defer cancel()
	if t.lostSend.Load() {
		if err := t.append(ctx, wireFrame[N]{Overflow: sse.ReasonHistory}); err != nil {
			return err
		}
		t.lostSend.Store(false)
	}
	if err := t.append(ctx, wireFrame[N]{Notifications: f.Notifications, Overflow: f.Overflow, Scope: f.Scope}); err != nil {
		t.lostSend.Store(true)
		return err
	}
	return nil
}

func (t *Transport[N]) append(ctx context.Context, w wireFrame[N]) error {
	data, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encoding a change feed frame: %w", err)
	}
	_, err = t.feed.Append(ctx, data)
	return err
}

// Close stops following.
func (t *Transport[N]) Close() error {
	if t.cancel != nil {
		t.cancel()
	}
	t.done.Wait()
	return nil
}

var _ sse.Transport[struct{}] = (*Transport[struct{}])(nil)
