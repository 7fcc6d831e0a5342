package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// hotKey has every connection of the load generator PUT one resource with
// If-Match through etag (verify upstream): the writes are serialised by the
// resource's lock, so at best one commits per round trip sequence of one
// lock holder (check GET, PUT, read after the write). Each round measures
// that bound first, on a connection of its own straight to the upstream,
// then the writers.
func (b *bench) hotKey(ctx context.Context, etag string) (row, error) {
	const path = "/doc/hot"
	name := fmt.Sprintf("Hot key: %d writers PUT If-Match one resource, verify upstream, vs one lock holder's upstream trips", b.o.conc)
	r := row{name: name}
	tag, err := fetchETag(etag, path)
	if err != nil {
		return r, err
	}
	if tag == "" {
		r.note = "skipped: no ETag from the etag site"
		return r, nil
	}
	hdr := [][2]string{{"If-Match", tag}, {"Content-Type", "application/json"}}
	hot := side{name: "hot", addr: etag, req: [][]byte{buildRequest("PUT", etag, path, hdr, b.up.doc)}}

	// One writer alone: the time a write holds the lock, seen from outside.
	alone := *b
	alone.o.conc = 1
	one, err := alone.round(ctx, hot, b.o.round, "")
	if err != nil {
		return r, err
	}
	if _, err := b.round(ctx, hot, min(b.o.round/3, time.Second), ""); err != nil { // warm-up
		return r, err
	}
	acc := &result{statuses: make(map[int]int64), preBad: make(map[int]int64), cpuOK: true}
	var bounds, ratios []float64
	var trips []time.Duration
	for range b.o.rounds {
		t, err := b.upstreamTrips(ctx, path, b.o.round/2)
		if err != nil {
			return r, err
		}
		res, err := b.round(ctx, hot, b.o.round, "")
		if err != nil {
			return r, err
		}
		bound := 1 / t.Seconds()
		bounds, trips = append(bounds, bound), append(trips, t)
		ratios = append(ratios, res.rps()/bound)
		acc.n += res.n
		acc.elapsed += res.elapsed
		acc.lat = append(acc.lat, res.lat...)
		for k, v := range res.statuses {
			acc.statuses[k] += v
		}
		acc.errs += res.errs
		if acc.firstErr == "" {
			acc.firstErr = res.firstErr
		}
		acc.upstream += res.upstream
		acc.all += res.all
		acc.cpu += res.cpu
		acc.cpuOK = acc.cpuOK && res.cpuOK
	}
	c := make([]string, 11)
	for i := range c {
		c[i] = "–"
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	slices.Sort(trips)
	c[0], c[1] = fmt.Sprintf("%.0f", med(bounds)), fmt.Sprintf("%.0f", acc.rps())
	lo, hi := slices.Min(ratios), slices.Max(ratios)
	c[2] = fmt.Sprintf("%.2f (%.2f–%.2f)", med(ratios), lo, hi)
	c[3], c[4] = fmtDur(one.percentile(0.50)), fmtDur(one.percentile(0.99))
	c[5], c[6] = fmtDur(acc.percentile(0.50)), fmtDur(acc.percentile(0.99))
	c[7] = fmtDur(one.cpuPerReq()) + " → " + fmtDur(acc.cpuPerReq())
	c[9] = fmt.Sprintf("%.2f → %.2f", one.upstreamPerReq(), acc.upstreamPerReq())
	every := time.Duration(0)
	if acc.rps() > 0 {
		every = time.Duration(float64(time.Second) / acc.rps())
	}
	notes := []string{fmt.Sprintf("plain req/s is the bound: 1 / one lock holder's upstream trips (GET, PUT, GET on one connection, median %s); etag req/s the writes committed, one every %s; plain p50/p99 one writer alone (%.0f writes/s), etag p50/p99 the %d writers (≈ the wait for the lock)",
		fmtDur(trips[len(trips)/2]), fmtDur(every), one.rps(), b.o.conc)}
	if p := acc.problems(204); p != "" {
		notes = append(notes, "writers: "+p)
	}
	if p := one.problems(204); p != "" {
		notes = append(notes, "one writer: "+p)
	}
	c[10] = joinNotes(notes...)
	r.fixed = c
	return r, nil
}

// upstreamTrips is the median time, over d, of the upstream round trips one
// conditional write makes with verify upstream and etag_after_write on: the
// check GET, the PUT and the read after it, back to back on one keep-alive
// connection to the upstream.
func (b *bench) upstreamTrips(ctx context.Context, path string, d time.Duration) (time.Duration, error) {
	addr := b.up.addr()
	c, err := dialRaw(addr, 64<<10)
	if err != nil {
		return 0, fmt.Errorf("connecting to the upstream: %w", err)
	}
	defer c.Close()
	get := buildRequest("GET", addr, path, nil, nil)
	put := buildRequest("PUT", addr, path, [][2]string{{"Content-Type", "application/json"}}, b.up.doc)
	var resp response
	var ts []time.Duration
	for end := time.Now().Add(d); ctx.Err() == nil && (time.Now().Before(end) || len(ts) == 0); {
		t0 := time.Now()
		for _, req := range [][]byte{get, put, get} {
			if err := c.roundTrip(req, &resp, false, false); err != nil {
				return 0, fmt.Errorf("upstream %s: %w", path, err)
			}
		}
		ts = append(ts, time.Since(t0))
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	slices.Sort(ts)
	return ts[len(ts)/2], nil
}
