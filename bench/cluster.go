package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/etaggate/etaggate/cluster"
)

// redisServer is the harness's own redis-server on 127.0.0.1, without
// persistence.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("the cluster rows need Debian's redis-server (apt-get install redis-server; scripts/test installs it): %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	r := &redisServer{addr: addr, cmd: cmd}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pingRedis(addr) == nil {
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s does not answer PING", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q: %v", line, err)
	}
	return nil
}

func (r *redisServer) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = r.cmd.Process.Wait()
}

// clusterRows compares etag with the cluster (a second gateway process, a
// replica on the harness's Redis) with the same etag without it: GETs,
// conditional PUTs, and the hand-off of a contended lock.
func (b *bench) clusterRows(ctx context.Context, bin, dir string, cfg gatewayConfig, want func(string) bool) ([]row, error) {
	rdir := filepath.Join(dir, "redis")
	cdir := filepath.Join(dir, "cluster")
	for _, d := range []string{rdir, cdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	redis, err := startRedis(ctx, rdir)
	if err != nil {
		return nil, err
	}
	defer redis.stop()
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	ccfg := cfg // every site on ports of its own; only two are measured
	ccfg.Admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	ccfg.Plain, ccfg.Etag, ccfg.EtagCache, ccfg.EtagNoAfter, ccfg.EtagCacheNoAfter, ccfg.EtagJSON = ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	ccfg.HaveNotify = false
	ccfg.Redis = redis.addr
	cfgPath := filepath.Join(cdir, "Caddyfile")
	if err := writeCaddyfile(cfgPath, ccfg); err != nil {
		return nil, err
	}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	gw, err := startGateway(ctx, bin, cfgPath, cdir, ccfg.Admin, []string{addr(ccfg.Etag), addr(ccfg.EtagCache)})
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	progress("cluster: waiting out the lock hold of a Redis that started empty (one lease)")
	if err := waitWritable(ctx, addr(ccfg.Etag)); err != nil {
		return nil, err
	}

	var rows []row
	if want("cluster-get") {
		for _, site := range []struct {
			what         string
			plain, clust int
		}{{"verify upstream", cfg.Etag, ccfg.Etag}, {"verify cache", cfg.EtagCache, ccfg.EtagCache}} {
			name := "Cluster: GET 4 KiB, " + site.what + ", with Redis vs without"
			progress("%s", name)
			p, c := addr(site.plain), addr(site.clust)
			res, err := b.compare(ctx, "cluster-get", []side{
				{name: "alone", addr: p, req: [][]byte{buildRequest("GET", p, "/json/4k", nil, nil)}},
				{name: "cluster", addr: c, gw: gw, redis: redis, req: [][]byte{buildRequest("GET", c, "/json/4k", nil, nil)}},
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			rows = append(rows, row{name: name, a: res[0], b: res[1], wantA: 200, wantB: 200,
				note: joinNotes("plain columns: the same etag site without the cluster", redisNote(res[1]))})
		}
	}
	if want("cluster-put") {
		for _, site := range []struct {
			what         string
			plain, clust int
		}{{"verify upstream", cfg.Etag, ccfg.Etag}, {"verify cache", cfg.EtagCache, ccfg.EtagCache}} {
			name := "Cluster: GET then PUT If-Match, " + site.what + ", with Redis vs without"
			progress("%s", name)
			alone, note1, err := b.putSide("alone-"+strings.ReplaceAll(site.what, " ", "-"), addr(site.plain), true)
			if err != nil {
				return nil, err
			}
			clust, note2, err := b.putSide("cluster-"+strings.ReplaceAll(site.what, " ", "-"), addr(site.clust), true)
			if err != nil {
				return nil, err
			}
			clust.gw, clust.redis = gw, redis
			res, err := b.compare(ctx, "cluster-put", []side{alone, clust})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			rows = append(rows, row{name: name, a: res[0], b: res[1], wantA: 204, wantB: 204,
				note: joinNotes("plain columns: the same etag site without the cluster", note1, note2, redisNote(res[1]))})
		}
	}
	if want("handoff") {
		progress("cluster: lock hand-off, %d writers on one resource over two replicas", b.o.conc)
		r, err := handoff(ctx, redis.addr, b.o.conc, time.Duration(b.o.rounds)*b.o.round)
		if err != nil {
			return nil, fmt.Errorf("hand-off: %w", err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// waitWritable PUTs with If-Match until the site stops answering 503: a
// fresh Redis grants no lock for one lease.
func waitWritable(ctx context.Context, addr string) error {
	const path = "/doc/cluster-ready"
	deadline := time.Now().Add(time.Minute)
	for {
		tag, err := fetchETag(addr, path)
		if err != nil {
			return err
		}
		c, err := dialRaw(addr, 64<<10)
		if err != nil {
			return err
		}
		var r response
		err = c.roundTrip(buildRequest("PUT", addr, path, [][2]string{{"If-Match", tag}, {"Content-Type", "application/json"}}, []byte(`{}`)), &r, false, false)
		c.Close()
		switch {
		case err != nil:
			return err
		case r.status >= 200 && r.status < 300:
			return nil
		case r.status != 503 || time.Now().After(deadline):
			return fmt.Errorf("PUT %s%s: status %d", addr, path, r.status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// handoff measures, for writers spread over two replicas (two clients,
// each with a local lock taken first, as the engine does), the time from
// one holder's release to the next holder's lock: the latency a
// contended resource adds per write.
func handoff(ctx context.Context, redisAddr string, writers int, d time.Duration) (row, error) {
	name := fmt.Sprintf("Cluster: lock hand-off, %d writers on one resource over two replicas", writers)
	r := row{name: name}
	replicas := make([]*cluster.Client, 2)
	for i := range replicas {
		c, err := cluster.Open(cluster.Options{Address: redisAddr})
		if err != nil {
			return r, err
		}
		defer c.Close()
		replicas[i] = c
	}
	rk := xxh3.HashString128("bench/handoff")
	var locals [2]sync.Mutex
	var released atomic.Int64 // Unix ns of the last release's start; 0 before the first
	var lastHolder atomic.Int32
	var mu sync.Mutex
	var gaps, cross []time.Duration
	var firstErr error
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		replica := w % 2
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				locals[replica].Lock()
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				l, err := replicas[replica].Lock(lctx, rk)
				cancel()
				if err != nil {
					locals[replica].Unlock()
					mu.Lock()
					firstErr = firstOf(firstErr, err)
					mu.Unlock()
					return
				}
				got := time.Now()
				if at := released.Load(); at != 0 {
					gap := got.Sub(time.Unix(0, at))
					mu.Lock()
					gaps = append(gaps, gap)
					if int(lastHolder.Load()) != replica {
						cross = append(cross, gap)
					}
					mu.Unlock()
				}
				lastHolder.Store(int32(replica))
				time.Sleep(100 * time.Microsecond) // the write
				released.Store(time.Now().UnixNano())
				err = l.Unlock()
				locals[replica].Unlock()
				if err != nil {
					mu.Lock()
					firstErr = firstOf(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return r, firstErr
	}
	if len(gaps) == 0 {
		return r, errors.New("no hand-off measured")
	}
	slices.Sort(gaps)
	slices.Sort(cross)
	pct := func(v []time.Duration, p float64) string {
		if len(v) == 0 {
			return "–"
		}
		return fmtDur(v[min(len(v)-1, int(float64(len(v))*p))])
	}
	c := make([]string, 11)
	for i := range c {
		c[i] = "–"
	}
	c[1] = fmt.Sprintf("%.0f", float64(len(gaps))/d.Seconds())
	c[5], c[6] = pct(gaps, 0.50), pct(gaps, 0.99)
	c[10] = fmt.Sprintf("release → next holder's lock, %d hand-offs in %s (etag req/s: hand-offs per second); across replicas (%d): p50 %s, p99 %s; each holder holds 100µs",
		len(gaps), d, len(cross), pct(cross, 0.50), pct(cross, 0.99))
	r.fixed = c
	return r, nil
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// redisWork is what Redis did over a stretch of time.
type redisWork struct {
	cpu      time.Duration
	commands int64
	reads    int64 // read events processed: a round trip or a batch of them
	ok       bool
}

// work reads the server's CPU time and its count of commands processed
// (one more for the INFO that reads it); a nil server did none.
func (r *redisServer) work() redisWork {
	if r == nil {
		return redisWork{}
	}
	cpu, err := procCPUTime(r.cmd.Process.Pid)
	if err != nil {
		return redisWork{}
	}
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return redisWork{}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO stats\r\n")); err != nil {
		return redisWork{}
	}
	br := bufio.NewReader(c)
	w := redisWork{cpu: cpu}
	fields := []struct {
		name string
		n    *int64
	}{{"total_commands_processed:", &w.commands}, {"total_reads_processed:", &w.reads}}
	for found := 0; found < len(fields); {
		line, err := br.ReadString('\n')
		if err != nil {
			return redisWork{}
		}
		for _, f := range fields {
			if v, ok := strings.CutPrefix(line, f.name); ok {
				if _, err := fmt.Sscan(v, f.n); err != nil {
					return redisWork{}
				}
				found++
			}
		}
	}
	w.ok = true
	return w
}

func (w redisWork) minus(o redisWork) redisWork {
	if !w.ok || !o.ok {
		return redisWork{}
	}
	return redisWork{cpu: w.cpu - o.cpu, commands: w.commands - o.commands - 1, reads: w.reads - o.reads - 1, ok: true}
}

func (w redisWork) plus(o redisWork) redisWork {
	if !o.ok {
		return w
	}
	return redisWork{cpu: w.cpu + o.cpu, commands: w.commands + o.commands, reads: w.reads + o.reads, ok: true}
}

// redisNote tells Redis's work per request of r, if it was counted.
func redisNote(r *result) string {
	if !r.redis.ok || r.all == 0 {
		return ""
	}
	n := float64(r.all)
	return fmt.Sprintf("Redis per request: %.2f commands in %.2f reads, CPU %s", float64(r.redis.commands)/n, float64(r.redis.reads)/n, fmtDur(time.Duration(float64(r.redis.cpu)/n)))
}
