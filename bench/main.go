// Command bench measures etaggate against the plain Caddy gateway it
// replaces, in one run of one gateway process: throughput and latency of
// GETs, of the 304 paths, of conditional PUTs, and SSE fan-out of fs_notify
// and of the change feed.
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	round      time.Duration
	rounds     int
	conc       int
	sse        []int
	changes    []int
	sseEvents  int
	batch      time.Duration
	gateway    string
	keep       bool
	profileDir string
	only       *regexp.Regexp
	etagExtra  string
	aa         bool
	putMode    string
}

func parseFlags() (options, error) {
	var o options
	var sse, changes, only string
	quick := flag.Bool("quick", false, "smoke run: two 0.5s rounds per side, 1,000 SSE subscribers")
	flag.DurationVar(&o.round, "d", time.Second, "duration of one measured round")
	flag.IntVar(&o.rounds, "rounds", 8, "measured rounds per side; sides alternate A B A B …")
	flag.IntVar(&o.conc, "c", 32, "concurrent keep-alive connections of the load generator")
	flag.StringVar(&sse, "sse", "1000,10000,50000", "SSE fan-out subscriber counts, comma-separated; empty for none")
	flag.StringVar(&changes, "changes", "10000", "change feed fan-out subscriber counts, comma-separated; empty for none")
	flag.IntVar(&o.sseEvents, "sse-events", 5, "file writes (events) per SSE fan-out measurement")
	flag.DurationVar(&o.batch, "batch", 50*time.Millisecond, "fs_notify batch window")
	flag.StringVar(&o.gateway, "gateway", "", "use this gateway binary instead of building ./cmd/caddy")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (Caddyfile, gateway log)")
	flag.StringVar(&o.profileDir, "profile", "", "save gateway CPU and allocation profiles of each side's first round into this directory")
	flag.StringVar(&only, "only", "", "run only the cases whose key matches this regexp (keys: get-1k get-4k get-64k get-1m get-4k-json get-4k-json-items 304 304-cache put put-changes sse-<n> changes-<n> burst hotkey cluster-get cluster-put handoff)")
	flag.StringVar(&o.etagExtra, "etag", "", "extra directive added to every etag block, e.g. 'hash sha256'")
	flag.StringVar(&o.putMode, "put-mode", "rmw", "PUT rows: rmw (a GET, untimed, before each PUT) or loop (PUTs back to back)")
	flag.BoolVar(&o.aa, "aa", false, "leave etag out of the etag sites (A/A run: shows the harness's own noise)")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *quick {
		o.round, o.rounds, sse, changes, o.sseEvents = 500*time.Millisecond, 2, "1000", "1000", 2
	}
	if o.putMode != "rmw" && o.putMode != "loop" {
		return o, fmt.Errorf("-put-mode: %q is neither rmw nor loop", o.putMode)
	}
	if o.round <= 0 || o.rounds < 1 || o.conc < 1 || o.sseEvents < 1 {
		return o, errors.New("-d, -rounds, -c and -sse-events must be positive")
	}
	var err error
	if o.sse, err = parseCounts("-sse", sse); err != nil {
		return o, err
	}
	if o.changes, err = parseCounts("-changes", changes); err != nil {
		return o, err
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return o, fmt.Errorf("-only: %w", err)
		}
		o.only = re
	}
	return o, nil
}

// parseCounts parses a comma-separated list of positive numbers.
func parseCounts(flagName, list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flagName, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	wantFiles := 4*o.conc + 1024
	if subs := append(slices.Clone(o.sse), o.changes...); len(subs) > 0 {
		wantFiles += slices.Max(subs)
	}
	nofile, err := raiseNofile(uint64(wantFiles))
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "etaggate-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer progress("kept %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	bin := o.gateway
	if bin == "" {
		progress("building the gateway (./cmd/caddy)")
		t := time.Now()
		if bin, err = buildGateway(ctx, root, dir); err != nil {
			return err
		}
		progress("built in %s", time.Since(t).Round(100*time.Millisecond))
	}
	mods, err := listModules(ctx, bin)
	if err != nil {
		return err
	}
	haveEtag := mods["http.handlers.etag"] && !o.aa
	haveNotify := mods["http.handlers.fs_notify"]
	if !mods["http.handlers.etag"] {
		progress("http.handlers.etag is not in the gateway: the etag sites are plain reverse_proxy (A/A)")
	}
	if !haveNotify {
		progress("http.handlers.fs_notify is not in the gateway: SSE rows are skipped")
	}

	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.close()

	ports, err := freePorts(11)
	if err != nil {
		return err
	}
	notifyRoot := filepath.Join(dir, "watched")
	if err := os.Mkdir(notifyRoot, 0o755); err != nil {
		return err
	}
	cfg := gatewayConfig{
		Admin:            fmt.Sprintf("127.0.0.1:%d", ports[0]),
		Upstream:         up.addr(),
		Plain:            ports[1],
		Etag:             ports[2],
		EtagCache:        ports[3],
		Notify:           ports[4],
		EtagNoAfter:      ports[5],
		EtagCacheNoAfter: ports[6],
		EtagJSON:         ports[7],
		JSONIgnore:       jsonIgnore,
		EtagRevalidate:   ports[8],
		EtagChanges:      ports[9],
		EtagJSONItems:    ports[10],
		JSONIgnoreItems:  jsonIgnoreItems,
		HaveEtag:         haveEtag,
		HaveNotify:       haveNotify,
		EtagExtra:        o.etagExtra,
		NotifyRoot:       notifyRoot,
		Batch:            o.batch,
		MaxSubscribers:   slices.Max(append([]int{1}, append(o.sse, o.changes...)...)) + 100,
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := writeCaddyfile(cfgPath, cfg); err != nil {
		return err
	}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	addrs := []string{addr(cfg.Plain), addr(cfg.Etag), addr(cfg.EtagCache), addr(cfg.EtagNoAfter), addr(cfg.EtagCacheNoAfter), addr(cfg.EtagJSON), addr(cfg.EtagRevalidate), addr(cfg.EtagChanges), addr(cfg.EtagJSONItems)}
	if haveNotify {
		addrs = append(addrs, addr(cfg.Notify))
	}
	gw, err := startGateway(ctx, bin, cfgPath, dir, cfg.Admin, addrs)
	if err != nil {
		return err
	}
	defer gw.stop()

	b := &bench{o: o, gw: gw, up: up}
	b.calibrate()

	env := describeMachine(ctx, root, o, !mods["http.handlers.etag"] || o.aa)
	var rows []row
	want := func(key string) bool { return o.only == nil || o.only.MatchString(key) }

	// SSE first, while the gateway's heap holds nothing from the load rows.
	for _, n := range o.sse {
		key := fmt.Sprintf("sse-%d", n)
		if !want(key) {
			continue
		}
		r := row{name: fmt.Sprintf("SSE fan-out, %s subscribers", thousands(n))}
		switch {
		case !haveNotify:
			r.note = "skipped: http.handlers.fs_notify is not in the gateway"
		case uint64(n)+512 > nofile:
			r.note = fmt.Sprintf("skipped: needs RLIMIT_NOFILE ≥ %d, the hard limit is %d (raise it with ulimit -Hn)", n+512, nofile)
		default:
			progress("%s", r.name)
			res, err := b.fanOut(ctx, notifyTarget(addr(cfg.Notify), notifyRoot, n), n, o.sseEvents)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			r.sse = res
		}
		rows = append(rows, r)
	}
	if len(o.sse) > 0 && haveNotify {
		time.Sleep(time.Second) // let the gateway finish closing the streams
	}
	if want("burst") && haveNotify {
		progress("notifier burst against inotifywait")
		var runs []*burstResult
		for i := range burstRuns {
			res, err := b.burst(ctx, addr(cfg.Notify), cfg.Admin, notifyRoot, fmt.Sprintf("burst-%d", i))
			if err != nil {
				return fmt.Errorf("notifier burst: %w", err)
			}
			runs = append(runs, res)
		}
		rows = append(rows, burstRows(runs)...)
	}
	for _, n := range o.changes {
		key := fmt.Sprintf("changes-%d", n)
		if !want(key) {
			continue
		}
		r := row{name: fmt.Sprintf("change feed fan-out, %s subscribers", thousands(n))}
		switch {
		case !haveEtag:
			r.note = "skipped: http.handlers.etag is not in the gateway"
		case uint64(n)+512 > nofile:
			r.note = fmt.Sprintf("skipped: needs RLIMIT_NOFILE ≥ %d, the hard limit is %d (raise it with ulimit -Hn)", n+512, nofile)
		default:
			progress("%s", r.name)
			res, err := b.fanOut(ctx, changesTarget(addr(cfg.EtagChanges), n, up.doc), n, o.sseEvents)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			r.sse = res
		}
		rows = append(rows, r)
		time.Sleep(time.Second) // let the gateway finish closing the streams
	}

	for _, s := range bodySizes {
		key := "get-" + s.name
		if !want(key) {
			continue
		}
		path := "/json/" + s.name
		name := "GET " + humanSize(s.size)
		progress("%s", name)
		res, err := b.compare(ctx, key, []side{
			{name: "plain", addr: addr(cfg.Plain), req: [][]byte{buildRequest("GET", addr(cfg.Plain), path, nil, nil)}},
			{name: "etag", addr: addr(cfg.Etag), req: [][]byte{buildRequest("GET", addr(cfg.Etag), path, nil, nil)}},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row{name: name, a: res[0], b: res[1], wantA: 200, wantB: 200})
	}

	for _, js := range []struct {
		key, ignore string
		port        int
	}{
		{"get-4k-json", jsonIgnore, cfg.EtagJSON},
		{"get-4k-json-items", jsonIgnoreItems, cfg.EtagJSONItems},
	} {
		if !want(js.key) {
			continue
		}
		const path = "/json/4k"
		name := "GET 4 KiB, json_ignore " + js.ignore
		progress("%s", name)
		res, err := b.compare(ctx, js.key, []side{
			{name: "plain", addr: addr(cfg.Plain), req: [][]byte{buildRequest("GET", addr(cfg.Plain), path, nil, nil)}},
			{name: "etag json_ignore", addr: addr(js.port), req: [][]byte{buildRequest("GET", addr(js.port), path, nil, nil)}},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row{name: name, a: res[0], b: res[1], wantA: 200, wantB: 200})
	}

	if want("304") {
		name := "304 (If-None-Match) vs plain 200, 4 KiB"
		progress("%s", name)
		r, err := b.notModified(ctx, name, "304", addr(cfg.Plain), addr(cfg.Etag))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, r)
	}

	if want("304-cache") {
		name := "304 from the cache (revalidate cache) vs plain 200, 4 KiB"
		progress("%s", name)
		r, err := b.notModified(ctx, name, "304-cache", addr(cfg.Plain), addr(cfg.EtagRevalidate))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, r)
	}

	if want("put") {
		progress("PUT with If-Match (%s), verify upstream and verify cache, vs plain PUT", o.putMode)
		rs, err := b.conditionalPut(ctx, addr(cfg.Plain), addr(cfg.Etag), addr(cfg.EtagCache), addr(cfg.EtagNoAfter), addr(cfg.EtagCacheNoAfter))
		if err != nil {
			return fmt.Errorf("PUT: %w", err)
		}
		rows = append(rows, rs...)
	}

	if want("put-changes") {
		progress("PUT with If-Match (%s), changes on vs off", o.putMode)
		r, err := b.putWithChanges(ctx, addr(cfg.Etag), addr(cfg.EtagChanges))
		if err != nil {
			return fmt.Errorf("PUT with changes: %w", err)
		}
		rows = append(rows, r)
	}

	if want("hotkey") {
		progress("hot key: %d writers on one resource", o.conc)
		r, err := b.hotKey(ctx, addr(cfg.Etag))
		if err != nil {
			return fmt.Errorf("hot key: %w", err)
		}
		rows = append(rows, r)
	}

	if want("cluster-get") || want("cluster-put") || want("handoff") {
		if _, err := exec.LookPath("redis-server"); err != nil {
			rows = append(rows, row{name: "Cluster rows", note: "skipped: redis-server is not installed (apt-get install redis-server)"})
		} else {
			rs, err := b.clusterRows(ctx, bin, dir, cfg, want)
			if err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			rows = append(rows, rs...)
		}
	}

	fmt.Println(env)
	fmt.Println()
	printTable(os.Stdout, rows, o.batch)
	progress("done in %s", time.Since(began).Round(time.Second))
	return nil
}

// notModified compares a 304 answer through etag with a plain 200 of the same
// 4 KiB resource.
func (b *bench) notModified(ctx context.Context, name, slug, plain, etag string) (row, error) {
	const path = "/json/4k"
	tag, err := fetchETag(etag, path)
	if err != nil {
		return row{}, err
	}
	r := row{name: name, wantA: 200, wantB: 304}
	var hdr [][2]string
	if tag == "" {
		r.note = "no ETag from the etag site: both sides get 200"
		r.wantB = 200
	} else {
		hdr = [][2]string{{"If-None-Match", tag}}
	}
	res, err := b.compare(ctx, slug, []side{
		{name: "plain", addr: plain, req: [][]byte{buildRequest("GET", plain, path, nil, nil)}},
		{name: "etag", addr: etag, req: [][]byte{buildRequest("GET", etag, path, hdr, nil)}},
	})
	if err != nil {
		return row{}, err
	}
	r.a, r.b = res[0], res[1]
	return r, nil
}

// conditionalPut compares PUTs with If-Match through etag (verify upstream and
// verify cache) with plain PUTs. In the default read-modify-write mode each
// PUT follows a GET of the same document through the same site, as an editor
// would do (that GET fills etag's cache; it is not timed); in loop mode PUTs
// follow each other. Each worker writes its own document, so the rows measure
// the cost per write rather than contention for one key's lock; the body
// written is the document's current content, so its ETag stays valid.
func (b *bench) conditionalPut(ctx context.Context, plain, etagUp, etagCache, etagUpNoAfter, etagCacheNoAfter string) ([]row, error) {
	mk := b.putSide
	a, _, err := mk("plain", plain, false)
	if err != nil {
		return nil, err
	}
	bu, noteU, err := mk("verify-upstream", etagUp, true)
	if err != nil {
		return nil, err
	}
	bc, noteC, err := mk("verify-cache", etagCache, true)
	if err != nil {
		return nil, err
	}
	bu2, noteU2, err := mk("verify-upstream-no-after", etagUpNoAfter, true)
	if err != nil {
		return nil, err
	}
	bc2, noteC2, err := mk("verify-cache-no-after", etagCacheNoAfter, true)
	if err != nil {
		return nil, err
	}
	res, err := b.compare(ctx, "put", []side{a, bu, bc, bu2, bc2})
	if err != nil {
		return nil, err
	}
	what := "GET then PUT If-Match"
	if b.o.putMode == "loop" {
		what = "PUT If-Match (loop)"
	}
	return []row{
		{name: what + ", verify upstream, vs plain", a: res[0], b: res[1], wantA: 204, wantB: 204, note: noteU},
		{name: what + ", verify cache, vs plain", a: res[0], b: res[2], wantA: 204, wantB: 204, note: noteC},
		{name: what + ", verify upstream, etag_after_write off", a: res[0], b: res[3], wantA: 204, wantB: 204, note: noteU2},
		{name: what + ", verify cache, etag_after_write off", a: res[0], b: res[4], wantA: 204, wantB: 204, note: noteC2},
	}, nil
}

// putSide builds the PUT side named name against addr: each worker PUTs
// its own document, with If-Match when conditional, after a GET of it in
// read-modify-write mode. The note says when the site gave no ETag.
func (b *bench) putSide(name, addr string, conditional bool) (side, string, error) {
	s := side{name: name, addr: addr}
	note := ""
	for w := range b.o.conc {
		path := fmt.Sprintf("/doc/%s/%d", name, w)
		var hdr [][2]string
		if conditional {
			tag, err := fetchETag(addr, path)
			if err != nil {
				return s, "", err
			}
			if tag == "" {
				note = "no ETag from the etag site: unconditional PUTs"
			} else {
				hdr = [][2]string{{"If-Match", tag}}
			}
		}
		hdr = append(hdr, [2]string{"Content-Type", "application/json"})
		s.req = append(s.req, buildRequest("PUT", addr, path, hdr, b.up.doc))
		if b.o.putMode == "rmw" {
			s.pre = append(s.pre, buildRequest("GET", addr, path, nil, nil))
		}
	}
	return s, note, nil
}

// putWithChanges compares conditional PUTs through etag with a change feed
// (every write published to it) with the same PUTs through etag without one.
func (b *bench) putWithChanges(ctx context.Context, off, on string) (row, error) {
	a, note, err := b.putSide("changes-off", off, true)
	if err != nil {
		return row{}, err
	}
	c, _, err := b.putSide("changes-on", on, true)
	if err != nil {
		return row{}, err
	}
	res, err := b.compare(ctx, "put-changes", []side{a, c})
	if err != nil {
		return row{}, err
	}
	what := "GET then PUT If-Match"
	if b.o.putMode == "loop" {
		what = "PUT If-Match (loop)"
	}
	return row{name: what + ", changes on (etag) vs off (plain)", a: res[0], b: res[1], wantA: 204, wantB: 204, note: note}, nil
}

// fetchETag GETs path from addr and returns the response's ETag.
func fetchETag(addr, path string) (string, error) {
	c, err := dialRaw(addr, 64<<10)
	if err != nil {
		return "", fmt.Errorf("connecting to the gateway at %s: %w", addr, err)
	}
	defer c.Close()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	var r response
	if err := c.roundTrip(buildRequest("GET", addr, path, nil, nil), &r, true, false); err != nil {
		return "", fmt.Errorf("GET %s%s: %w", addr, path, err)
	}
	if r.status != 200 {
		return "", fmt.Errorf("GET %s%s: status %d, want 200", addr, path, r.status)
	}
	return r.etag, nil
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit (and tries to
// raise both to want), so that thousands of SSE clients fit; the gateway
// inherits the limit. It returns the resulting soft limit.
func raiseNofile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// describeMachine is the line printed above the table.
func describeMachine(ctx context.Context, root string, o options, aa bool) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	commit := "unknown commit"
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	s := fmt.Sprintf("%s, nproc %d, %s %s/%s, commit %s; %d connections, %d×%s rounds per side, A B alternating",
		cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, commit, o.conc, o.rounds, o.round)
	if o.etagExtra != "" {
		s += fmt.Sprintf("; etag { %s }", o.etagExtra)
	}
	if aa {
		s += "; A/A: the etag sites run without etag"
	}
	return s
}
