package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// side is one of the configurations a row compares: a site of the gateway
// and the request each worker sends to it.
type side struct {
	name string
	addr string
	req  [][]byte // per worker; a worker w sends req[w%len(req)]
	pre  [][]byte // if set, sent (untimed) before each req, expecting 200
	want int      // expected status
	head bool
	gw   *gateway // the process serving addr; nil for the bench's gateway
	// redis, if set, is the cluster's Redis, whose work per request the
	// rounds count too.
	redis *redisServer
}

// result accumulates the rounds of one side.
type result struct {
	n        int64
	elapsed  time.Duration
	perRound []float64 // requests per second of each measured round
	lat      []time.Duration
	statuses map[int]int64
	errs     int64
	firstErr string
	mallocs  int64         // gateway heap allocations during the rounds with allocN
	allocN   int64         // requests of the rounds in which allocations were counted
	upstream int64         // upstream requests during the rounds
	all      int64         // requests completed during the rounds, including after the deadline
	pres     int64         // requests sent before measured ones (side.pre)
	preBad   map[int]int64 // their statuses other than 200
	cpu      time.Duration // gateway CPU time during the rounds
	cpuOK    bool
	redis    redisWork // the side's Redis's work during the rounds
}

func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

// ratio compares r with base round by round: the median of the ratios of
// rounds run back to back, and their range. The median shrugs off a round
// that another process on the machine disturbed.
func (r *result) ratio(base *result) (median, lo, hi float64) {
	var rs []float64
	for i := range min(len(r.perRound), len(base.perRound)) {
		if base.perRound[i] > 0 {
			rs = append(rs, r.perRound[i]/base.perRound[i])
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(rs)
	median = rs[len(rs)/2]
	if len(rs)%2 == 0 {
		median = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return median, rs[0], rs[len(rs)-1]
}

func (r *result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	if !slices.IsSorted(r.lat) {
		slices.Sort(r.lat)
	}
	i := int(p * float64(len(r.lat)-1))
	return r.lat[i]
}

func (r *result) allocsPerReq() float64 {
	if r.allocN == 0 {
		return -1
	}
	return float64(r.mallocs) / float64(r.allocN)
}

// cpuPerReq is the gateway's CPU time per request, or -1 when unknown.
func (r *result) cpuPerReq() time.Duration {
	if !r.cpuOK || r.all == 0 {
		return -1
	}
	return r.cpu / time.Duration(r.all)
}

func (r *result) upstreamPerReq() float64 {
	if r.all == 0 {
		return 0
	}
	return float64(r.upstream-r.pres) / float64(r.all)
}

// problems describes unexpected statuses and transport errors, if any.
func (r *result) problems(want int) string {
	var parts []string
	codes := make([]int, 0, len(r.statuses))
	for code := range r.statuses {
		if code != want {
			codes = append(codes, code)
		}
	}
	sort.Ints(codes)
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", r.statuses[code], code))
	}
	codes = codes[:0]
	for code := range r.preBad {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d to the GET before", r.preBad[code], code))
	}
	if r.errs > 0 {
		parts = append(parts, fmt.Sprintf("%d errors (%s)", r.errs, r.firstErr))
	}
	return strings.Join(parts, ", ")
}

// bench holds what every measurement needs.
type bench struct {
	o          options
	gw         *gateway
	up         *upstream
	allocsBase float64 // allocations of one /debug/vars read, subtracted
}

// compare runs warm-up and then o.rounds rounds of every side in turn
// (A B A B …), so slow drift of the machine affects all sides alike.
func (b *bench) compare(ctx context.Context, slug string, sides []side) ([]*result, error) {
	results := make([]*result, len(sides))
	for i := range results {
		results[i] = &result{statuses: make(map[int]int64), preBad: make(map[int]int64), cpuOK: true}
	}
	warm := min(b.o.round/3, time.Second)
	for _, s := range sides {
		if _, err := b.round(ctx, s, warm, ""); err != nil {
			return nil, err
		}
	}
	for r := range b.o.rounds {
		for i, s := range sides {
			prof := ""
			if b.o.profileDir != "" && r == 0 {
				prof = fmt.Sprintf("%s-%s", slug, s.name)
			}
			res, err := b.round(ctx, s, b.o.round, prof)
			if err != nil {
				return nil, err
			}
			acc := results[i]
			acc.n += res.n
			acc.elapsed += res.elapsed
			acc.perRound = append(acc.perRound, res.rps())
			acc.lat = append(acc.lat, res.lat...)
			for k, v := range res.statuses {
				acc.statuses[k] += v
			}
			acc.errs += res.errs
			if acc.firstErr == "" {
				acc.firstErr = res.firstErr
			}
			acc.mallocs += res.mallocs
			acc.allocN += res.allocN
			acc.upstream += res.upstream
			acc.redis = acc.redis.plus(res.redis)
			acc.all += res.all
			acc.pres += res.pres
			for k, v := range res.preBad {
				acc.preBad[k] += v
			}
			acc.cpu += res.cpu
			acc.cpuOK = acc.cpuOK && res.cpuOK
		}
	}
	return results, nil
}

// round runs o.conc keep-alive workers against s for d. Requests that finish
// after d are not counted.
func (b *bench) round(ctx context.Context, s side, d time.Duration, profileName string) (*result, error) {
	gw := s.gw
	if gw == nil {
		gw = b.gw
	}
	if err := gw.alive(); err != nil {
		return nil, err
	}
	conc := b.o.conc
	conns := make([]*rawConn, conc)
	for w := range conns {
		c, err := dialRaw(s.addr, 64<<10)
		if err != nil {
			for _, c := range conns[:w] {
				c.Close()
			}
			return nil, fmt.Errorf("connecting to the gateway at %s: %w", s.addr, err)
		}
		conns[w] = c
	}
	out := make([]workerResult, conc)

	ms0, memErr := gw.memStats()
	up0 := b.up.requests.Load()
	cpu0, cpuErr := gw.cpuTime()
	redis0 := s.redis.work()
	var prof <-chan error
	if profileName != "" && d >= time.Second {
		prof = gw.profile(b.o.profileDir, profileName, d)
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wr := &out[w]
			wr.statuses = make(map[int]int64, 2)
			wr.preBad = make(map[int]int64)
			wr.lat = make([]time.Duration, 0, 4096)
			c := conns[w]
			req := s.req[w%len(s.req)]
			var pre []byte
			if len(s.pre) > 0 {
				pre = s.pre[w%len(s.pre)]
			}
			var resp response
			// send makes one request, reconnecting as needed; false after
			// a transport error.
			send := func(req []byte) bool {
				if c == nil {
					var err error
					if c, err = dialRaw(s.addr, 64<<10); err != nil {
						wr.fail(err)
						time.Sleep(10 * time.Millisecond)
						return false
					}
				}
				if err := c.roundTrip(req, &resp, false, s.head); err != nil {
					wr.fail(err)
					c.Close()
					c = nil
					return false
				}
				if resp.close {
					c.Close()
					c = nil
				}
				return true
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if pre != nil {
					if !send(pre) {
						continue
					}
					wr.pres++
					if resp.status != 200 {
						wr.preBad[resp.status]++
					}
				}
				t0 := time.Now()
				if !send(req) {
					continue
				}
				t1 := time.Now()
				if t1.After(deadline) {
					wr.tail++
					break
				}
				wr.n++
				wr.statuses[resp.status]++
				wr.lat = append(wr.lat, t1.Sub(t0))
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	res := &result{elapsed: d, statuses: make(map[int]int64), preBad: make(map[int]int64)}
	if cpu1, err := gw.cpuTime(); err == nil && cpuErr == nil {
		res.cpu, res.cpuOK = cpu1-cpu0, true
	}
	res.redis = s.redis.work().minus(redis0)
	res.upstream = b.up.requests.Load() - up0
	var ms1 memStats
	if memErr == nil {
		ms1, memErr = gw.memStats()
	}
	if prof != nil {
		if err := <-prof; err != nil {
			return nil, fmt.Errorf("profiling the gateway: %w", err)
		}
	}
	for _, wr := range out {
		res.n += wr.n
		res.all += wr.n + wr.tail
		res.pres += wr.pres
		for k, v := range wr.preBad {
			res.preBad[k] += v
		}
		res.lat = append(res.lat, wr.lat...)
		for k, v := range wr.statuses {
			res.statuses[k] += v
		}
		res.errs += wr.errs
		if res.firstErr == "" {
			res.firstErr = wr.firstErr
		}
	}
	// A profiled round's allocations include the profiler's; leave it out.
	if memErr == nil && prof == nil {
		res.mallocs = int64(ms1.Mallocs-ms0.Mallocs) - int64(b.allocsBase)
		res.allocN = res.all
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

type workerResult struct {
	n, tail  int64
	pres     int64 // requests sent before each measured one
	lat      []time.Duration
	statuses map[int]int64
	preBad   map[int]int64 // statuses other than 200 of the requests before
	errs     int64
	firstErr string
}

func (wr *workerResult) fail(err error) {
	wr.errs++
	if wr.firstErr == "" {
		wr.firstErr = err.Error()
	}
}

// calibrate measures the allocations of one /debug/vars read, so that they
// are not counted as allocations of the requests measured between two reads.
func (b *bench) calibrate() {
	const reads = 5
	first, err := b.gw.memStats()
	if err != nil {
		return
	}
	last := first
	for range reads {
		if last, err = b.gw.memStats(); err != nil {
			return
		}
	}
	b.allocsBase = float64(last.Mallocs-first.Mallocs) / reads
}
