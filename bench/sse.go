package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sseResult is one fan-out measurement.
type sseResult struct {
	subscribers int // asked for
	connected   int // got 200 and the first comment
	refused     map[string]int
	connectTime time.Duration
	events      int
	delivered   int64 // (subscriber, event) pairs received
	lat         []time.Duration
	heapPerSub  float64 // Go heap in use, bytes
	stackPerSub float64 // goroutine stacks, bytes
	rssPerSub   float64
	goroutines  float64       // gateway goroutines per subscriber
	gwCPU       time.Duration // gateway CPU time per event
	selfCPU     time.Duration // the harness's CPU time per event (the receiving side)
	cpuOK       bool
	overflows   atomic.Int64
	dropped     atomic.Int64 // streams that ended before the harness closed them
}

func (r *sseResult) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	if !slices.IsSorted(r.lat) {
		slices.Sort(r.lat)
	}
	return r.lat[int(p*float64(len(r.lat)-1))]
}

// withinShare is the share of expected deliveries that arrived within d.
func (r *sseResult) withinShare(d time.Duration) float64 {
	want := r.connected * r.events
	if want == 0 {
		return 0
	}
	n := sort.Search(len(r.lat), func(i int) bool { return r.lat[i] > d })
	return float64(n) / float64(want)
}

func (r *sseResult) refusedText() string {
	var parts []string
	for k, v := range r.refused {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// subscriber is one SSE client connection.
type subscriber struct {
	conn *rawConn
	got  []atomic.Int64 // arrival time (UnixNano) per event, 0 until received
}

// fanTarget is a stream to fan out and the way to make its events happen.
type fanTarget struct {
	addr, path string
	// name is what the data line of event e contains; trigger makes event e
	// happen.
	name    func(e int) string
	trigger func(e int) error
}

// notifyTarget is fs_notify's stream of the watched directory's root; its
// events are new files written into it.
func notifyTarget(addr, root string, n int) fanTarget {
	name := func(e int) string { return fmt.Sprintf("fanout-%d-%d.json", n, e) }
	return fanTarget{addr: addr, path: "/v1/files/%2F/notify", name: name, trigger: func(e int) error {
		if err := os.WriteFile(filepath.Join(root, name(e)), []byte(`{"event":`+fmt.Sprint(e)+`}`), 0o644); err != nil {
			return fmt.Errorf("writing into the watched directory: %w", err)
		}
		return nil
	}}
}

// changesTarget is the change feed of an etag site; its events are PUTs
// through that site.
func changesTarget(addr string, n int, body []byte) fanTarget {
	path := func(e int) string { return fmt.Sprintf("/doc/fanout-%d-%d", n, e) }
	name := func(e int) string { return `"path":"` + path(e) + `"` }
	return fanTarget{addr: addr, path: "/changes", name: name, trigger: func(e int) error {
		c, err := dialRaw(addr, 4096)
		if err != nil {
			return err
		}
		defer c.Close()
		c.c.SetDeadline(time.Now().Add(10 * time.Second))
		var r response
		req := buildRequest("PUT", addr, path(e), [][2]string{{"Content-Type", "application/json"}}, body)
		if err := c.roundTrip(req, &r, false, false); err != nil {
			return fmt.Errorf("PUT %s: %w", path(e), err)
		}
		if r.status != 204 {
			return fmt.Errorf("PUT %s: status %d, want 204", path(e), r.status)
		}
		return nil
	}}
}

// fanOut connects n subscribers to the target's stream, measures the
// gateway's memory with all of them idle, then makes one event happen at a
// time and measures when each subscriber receives it.
func (b *bench) fanOut(ctx context.Context, target fanTarget, n, events int) (*sseResult, error) {
	res := &sseResult{subscribers: n, events: events, refused: make(map[string]int)}
	names := make([]string, events)
	for e := range names {
		names[e] = target.name(e)
	}
	addr := target.addr

	if err := b.gw.collectGarbage(); err != nil {
		return nil, err
	}
	ms0, err := b.gw.memStats()
	if err != nil {
		return nil, err
	}
	rss0, err := b.gw.rss()
	if err != nil {
		return nil, err
	}
	g0, err := b.gw.goroutines()
	if err != nil {
		return nil, err
	}

	req := buildRequest("GET", addr, target.path, [][2]string{{"Accept", "text/event-stream"}}, nil)
	subs := make([]*subscriber, n)
	var (
		mu       sync.Mutex
		readers  sync.WaitGroup
		closing  atomic.Bool
		received = make([]atomic.Int64, events)
	)
	refuse := func(why string) {
		mu.Lock()
		res.refused[why]++
		mu.Unlock()
	}
	connectStart := time.Now()
	sem := make(chan struct{}, 128)
	var dialers sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		dialers.Add(1)
		go func() {
			defer func() { <-sem; dialers.Done() }()
			c, err := dialRawFrom(addr, 2048, i)
			if err != nil {
				refuse("dial: " + errText(err))
				return
			}
			c.c.SetDeadline(time.Now().Add(30 * time.Second))
			var head response
			if _, err := c.c.Write(req); err != nil {
				c.Close()
				refuse("write: " + errText(err))
				return
			}
			if err := c.readHead(&head, false); err != nil {
				c.Close()
				refuse("response: " + errText(err))
				return
			}
			if head.status != 200 {
				c.Close()
				refuse(fmt.Sprintf("status %d", head.status))
				return
			}
			body := bufio.NewReaderSize(c.bodyReader(&head), 1024)
			// The first bytes are a comment once the watch is established.
			first, err := body.ReadString('\n')
			if err != nil || !strings.HasPrefix(first, ":") {
				c.Close()
				if err != nil {
					refuse("first line: " + errText(err))
				} else {
					refuse(fmt.Sprintf("first line %.40q is not a comment", first))
				}
				return
			}
			c.c.SetDeadline(time.Time{})
			s := &subscriber{conn: c, got: make([]atomic.Int64, events)}
			subs[i] = s
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					line, err := body.ReadString('\n')
					if err != nil {
						if !closing.Load() {
							res.dropped.Add(1)
						}
						return
					}
					switch {
					case strings.HasPrefix(line, "data:"):
						s.match(line, names, received)
					case strings.HasPrefix(line, "event: overflow"):
						res.overflows.Add(1)
					}
				}
			}()
		}()
	}
	dialers.Wait()
	res.connectTime = time.Since(connectStart)
	for _, s := range subs {
		if s != nil {
			res.connected++
		}
	}
	defer func() {
		closing.Store(true)
		for _, s := range subs {
			if s != nil {
				s.conn.Close()
			}
		}
		readers.Wait()
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.connected == 0 {
		return res, nil
	}

	// Idle memory: every subscriber connected and waiting.
	time.Sleep(500 * time.Millisecond)
	if err := b.gw.collectGarbage(); err != nil {
		return nil, err
	}
	ms1, err := b.gw.memStats()
	if err != nil {
		return nil, err
	}
	rss1, err := b.gw.rss()
	if err != nil {
		return nil, err
	}
	res.heapPerSub = (float64(ms1.HeapInuse) - float64(ms0.HeapInuse)) / float64(res.connected)
	res.stackPerSub = (float64(ms1.StackInuse) - float64(ms0.StackInuse)) / float64(res.connected)
	res.rssPerSub = float64(rss1-rss0) / float64(res.connected)
	g1, err := b.gw.goroutines()
	if err != nil {
		return nil, err
	}
	res.goroutines = float64(g1-g0) / float64(res.connected)

	// Events at least eventGap apart, so that the run takes the same time
	// with and without a CPU profile of it.
	const eventGap = 500 * time.Millisecond
	var prof <-chan error
	if b.o.profileDir != "" {
		name := fmt.Sprintf("sse-%d", n)
		for _, kind := range []string{"heap", "goroutine"} {
			if err := b.gw.save(kind, filepath.Join(b.o.profileDir, name+"."+kind+".pprof")); err != nil {
				return nil, err
			}
		}
		prof = b.gw.profile(b.o.profileDir, name, time.Duration(events)*eventGap)
	}
	sent := make([]time.Time, events)
	wait := b.o.batch + 5*time.Second
	gwCPU0, gwErr := b.gw.cpuTime()
	selfCPU0, selfErr := selfCPUTime()
	for e := range events {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sent[e] = time.Now()
		if err := target.trigger(e); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(wait)
		for received[e].Load() < int64(res.connected) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(max(100*time.Millisecond, time.Until(sent[e].Add(eventGap))))
	}
	gwCPU1, gwErr1 := b.gw.cpuTime()
	selfCPU1, selfErr1 := selfCPUTime()
	if errors.Join(gwErr, selfErr, gwErr1, selfErr1) == nil {
		res.cpuOK = true
		res.gwCPU = (gwCPU1 - gwCPU0) / time.Duration(events)
		res.selfCPU = (selfCPU1 - selfCPU0) / time.Duration(events)
	}
	if prof != nil {
		if err := <-prof; err != nil {
			return nil, fmt.Errorf("profiling the gateway: %w", err)
		}
	}
	for _, s := range subs {
		if s == nil {
			continue
		}
		for e := range events {
			if t := s.got[e].Load(); t != 0 {
				res.lat = append(res.lat, time.Unix(0, t).Sub(sent[e]))
				res.delivered++
			}
		}
	}
	slices.Sort(res.lat)
	return res, nil
}

// match records the arrival of every expected file name in a data line.
func (s *subscriber) match(line string, names []string, received []atomic.Int64) {
	now := time.Now().UnixNano()
	for e, name := range names {
		if strings.Contains(line, name) && s.got[e].CompareAndSwap(0, now) {
			received[e].Add(1)
		}
	}
}

// errText is err without the addresses of a net.OpError, so that equal
// failures of many connections count as one kind.
func errText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// selfCPUTime returns the CPU time (user and system) this process has used.
func selfCPUTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
