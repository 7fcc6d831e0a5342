package cluster

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The subscription's health check: a ping after every quiet pingEvery,
// and the mirror stops answering when nothing at all was heard for
// silence, which bounds how long a replica cut off from Redis without its
// connection closing trusts what it remembers.
const (
	pingEvery = 250 * time.Millisecond
	silence   = time.Second
)

// subscription is the process's one connection that listens to Redis: it
// wakes lock waiters on releases and keeps the mirror of generations
// true. Close stops it.
type subscription struct {
	c      *Client
	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
}

// run receives messages until the client closes. Whenever the
// subscription is (re)established, every waiter retries and the mirror is
// emptied: messages sent while it was down are lost.
func (s *subscription) run() {
	c := s.c
	ctx := c.ctx
	released, changed := c.releasedChannel(), c.changedChannel()
	ps := c.rdb.Subscribe(ctx, released, changed)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ps.Close()
		return
	}
	s.ps = ps
	s.mu.Unlock()
	defer c.mirror.down()

	subscribed := false // to the changed channel, on the current connection
	heard := time.Now()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if subscribed && isTimeout(err) {
				if time.Since(heard) >= silence {
					c.mirror.down()
				}
				if err := ps.Ping(ctx); err == nil {
					continue
				}
			}
			subscribed = false
			c.mirror.down()
			c.log.Debug("redis subscription failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == changed {
				c.mirror.forgetID(m.Payload)
			} else {
				c.wake.wake(m.Payload)
			}
		case *redis.Subscription:
			switch {
			case m.Kind == "subscribe" && m.Channel == changed:
				subscribed = true
			case m.Kind == "subscribe" && m.Channel == released:
				c.wake.wake("")
			}
		}
		if subscribed {
			c.mirror.up() // a no-op while it is up
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *subscription) close() {
	s.mu.Lock()
	s.closed = true
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}
