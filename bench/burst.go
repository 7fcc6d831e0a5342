package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Burst shape: burstFiles files spread over burstDirs directories of a
// recursive watch.
const (
	burstDirs  = 200
	burstFiles = 20000
	// inotifyEvents is the notifier's own watch mask, for inotifywait.
	inotifyEvents = "access,modify,attrib,create,delete,moved_from,moved_to,delete_self,move_self"
)

// burstPhase is one kind of operation applied to every file of the burst.
type burstPhase struct {
	name    string
	ops     int
	implied int           // notifications the operations imply
	missed  int           // of those, not received within the wait
	gwTime  time.Duration // phase start to the last implied notification
	iwTime  time.Duration // phase start to inotifywait's last event
}

// burstResult is the notifier burst measured against inotifywait.
type burstResult struct {
	phases          []burstPhase
	kernelEvents    int64 // events inotifywait printed (the same mask as the gateway's)
	iwOverflows     int64 // IN_Q_OVERFLOW seen by inotifywait
	gwCPU, iwCPU    time.Duration
	received        int64 // notifications the subscriber got, of any type
	overflowEvents  int64 // event: overflow on the stream
	kernelOverflows float64
	maxQueued       string
}

// burstWatcher is the subscriber's record of the notifications received,
// and the set the current phase waits for.
type burstWatcher struct {
	mu        sync.Mutex
	want      map[string]bool // "type path" still expected
	remaining int
	last      time.Time // arrival of the last expected one
	received  atomic.Int64
	overflows atomic.Int64
	ended     atomic.Bool
}

func (w *burstWatcher) expect(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = make(map[string]bool, len(keys))
	for _, k := range keys {
		w.want[k] = true
	}
	w.remaining = len(w.want)
	w.last = time.Time{}
}

func (w *burstWatcher) left() (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remaining, w.last
}

// read parses the stream's data lines until it ends.
func (w *burstWatcher) read(body *bufio.Reader) {
	var ns []struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	for {
		line, err := body.ReadBytes('\n')
		if err != nil {
			w.ended.Store(true)
			return
		}
		switch {
		case bytes.HasPrefix(line, []byte("event: overflow")):
			w.overflows.Add(1)
		case bytes.HasPrefix(line, []byte("data: [")):
			ns = ns[:0]
			if json.Unmarshal(line[len("data: "):], &ns) != nil {
				continue
			}
			now := time.Now()
			w.received.Add(int64(len(ns)))
			w.mu.Lock()
			for _, n := range ns {
				k := n.Type + " " + n.Path
				if w.want[k] {
					delete(w.want, k)
					w.remaining--
					w.last = now
				}
			}
			w.mu.Unlock()
		}
	}
}

// inotifywait is the reference consumer: inotify-tools printing each event.
type inotifywait struct {
	cmd       *exec.Cmd
	lines     atomic.Int64
	overflows atomic.Int64
	last      atomic.Int64 // UnixNano of the last line
	done      chan struct{}
}

// needInotifywait finds inotifywait, installing Debian's inotify-tools when
// it is missing and the harness may.
func needInotifywait(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("inotifywait"); err == nil {
		return p, nil
	}
	progress("inotifywait is missing: apt-get install -y inotify-tools")
	out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "inotify-tools").CombinedOutput()
	if p, lerr := exec.LookPath("inotifywait"); lerr == nil {
		return p, nil
	}
	return "", fmt.Errorf("the notifier burst needs inotifywait (Debian package inotify-tools; install it with `apt-get install inotify-tools` or leave the case out with -only): apt-get: %v\n%s", err, out)
}

func startInotifywait(ctx context.Context, bin, dir string) (*inotifywait, error) {
	iw := &inotifywait{done: make(chan struct{})}
	iw.cmd = exec.CommandContext(ctx, bin, "-m", "-r", "-e", inotifyEvents, "--format", "%e %w%f", dir)
	stdout, err := iw.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := iw.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := iw.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting inotifywait: %w", err)
	}
	go func() {
		defer close(iw.done)
		r := bufio.NewReaderSize(stdout, 256<<10)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 {
				iw.lines.Add(1)
				iw.last.Store(time.Now().UnixNano())
				if bytes.Contains(line, []byte("Q_OVERFLOW")) {
					iw.overflows.Add(1)
				}
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
	}()
	// "Setting up watches." then "Watches established." on stderr.
	ready := make(chan error, 1)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			if strings.Contains(s.Text(), "Watches established") {
				ready <- nil
				io.Copy(io.Discard, stderr)
				return
			}
		}
		ready <- errors.New("inotifywait exited before its watches were established")
	}()
	select {
	case err := <-ready:
		if err != nil {
			iw.stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		iw.stop()
		return nil, errors.New("inotifywait did not establish its watches within 30s")
	}
	return iw, nil
}

func (iw *inotifywait) stop() {
	iw.cmd.Process.Kill()
	iw.cmd.Wait()
}

// cpuTime is inotifywait's CPU time (user and system) so far.
func (iw *inotifywait) cpuTime() (time.Duration, error) { return procCPUTime(iw.cmd.Process.Pid) }

// quiet waits until inotifywait has printed nothing for d (at most max),
// and returns when it printed last.
func (iw *inotifywait) quiet(d, max time.Duration) time.Time {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		last := time.Unix(0, iw.last.Load())
		if time.Since(last) >= d {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Unix(0, iw.last.Load())
}

// burst subscribes recursively to a new directory below the watched root,
// with inotifywait -m -r watching it too, then creates, writes, renames and
// removes (rm -rf) burstFiles files in burstDirs directories, one kind of
// operation after the other. Each phase ends when the subscriber has every
// notification the operations imply (or after a wait), and inotifywait has
// been quiet for a while.
func (b *bench) burst(ctx context.Context, addr, admin, root, name string) (*burstResult, error) {
	bin, err := needInotifywait(ctx)
	if err != nil {
		return nil, err
	}
	res := &burstResult{}
	if q, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		res.maxQueued = strings.TrimSpace(string(q))
	}
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	c, err := dialRaw(addr, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("connecting to the notify site: %w", err)
	}
	defer c.Close()
	c.c.SetDeadline(time.Now().Add(30 * time.Second))
	req := buildRequest("GET", addr, "/v1/files/%2F"+name+"/notify?recursive=true", [][2]string{{"Accept", "text/event-stream"}}, nil)
	if _, err := c.c.Write(req); err != nil {
		return nil, err
	}
	var head response
	if err := c.readHead(&head, false); err != nil {
		return nil, fmt.Errorf("subscribing: %w", err)
	}
	if head.status != 200 {
		return nil, fmt.Errorf("subscribing: status %d", head.status)
	}
	body := bufio.NewReaderSize(c.bodyReader(&head), 1<<20)
	if first, err := body.ReadString('\n'); err != nil || !strings.HasPrefix(first, ":") {
		return nil, fmt.Errorf("subscribing: first line %q, %v", first, err)
	}
	c.c.SetDeadline(time.Time{})
	w := &burstWatcher{}
	go w.read(body)

	iw, err := startInotifywait(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	defer iw.stop()

	over0, err := b.gw.metric(admin, "caddy_fs_notify_kernel_overflows_total")
	if err != nil {
		return nil, err
	}
	gw0, err1 := b.gw.cpuTime()
	iw0, err2 := iw.cpuTime()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	var prof <-chan error
	if b.o.profileDir != "" {
		prof = b.gw.profile(b.o.profileDir, name, 10*time.Second)
	}

	dname := func(d int) string { return fmt.Sprintf("d%03d", d) }
	fname := func(f int, prefix string) string {
		return fmt.Sprintf("%s/%s%05d", dname(f%burstDirs), prefix, f)
	}
	type phase struct {
		name string
		ops  int
		run  func() error
		keys func() []string
	}
	payload := bytes.Repeat([]byte("x"), 100)
	phases := []phase{
		{"create", burstDirs + burstFiles, func() error {
			for d := range burstDirs {
				if err := os.Mkdir(filepath.Join(dir, dname(d)), 0o755); err != nil {
					return err
				}
				for f := d; f < burstFiles; f += burstDirs {
					fd, err := unix.Open(filepath.Join(dir, fname(f, "f")), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
					if err != nil {
						return err
					}
					unix.Close(fd)
				}
			}
			return nil
		}, func() []string {
			var k []string
			for d := range burstDirs {
				k = append(k, "child_dir_added "+dname(d))
			}
			for f := range burstFiles {
				k = append(k, "child_file_added "+fname(f, "f"))
			}
			return k
		}},
		{"write", burstFiles, func() error {
			for f := range burstFiles {
				fd, err := unix.Open(filepath.Join(dir, fname(f, "f")), unix.O_WRONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				_, err = unix.Write(fd, payload)
				unix.Close(fd)
				if err != nil {
					return err
				}
			}
			return nil
		}, func() []string {
			var k []string
			for f := range burstFiles {
				k = append(k, "child_data_written "+fname(f, "f"))
			}
			return k
		}},
		{"rename", burstFiles, func() error {
			for f := range burstFiles {
				if err := os.Rename(filepath.Join(dir, fname(f, "f")), filepath.Join(dir, fname(f, "g"))); err != nil {
					return err
				}
			}
			return nil
		}, func() []string {
			var k []string
			for f := range burstFiles {
				k = append(k, "child_file_moved_from "+fname(f, "f"), "child_file_moved_to "+fname(f, "g"))
			}
			return k
		}},
		{"rm -rf", burstDirs + burstFiles, func() error {
			args := []string{"-rf"}
			for d := range burstDirs {
				args = append(args, dname(d))
			}
			cmd := exec.CommandContext(ctx, "rm", args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("rm -rf: %w: %s", err, out)
			}
			return nil
		}, func() []string {
			var k []string
			for d := range burstDirs {
				k = append(k, "child_dir_removed "+dname(d))
			}
			for f := range burstFiles {
				k = append(k, "child_file_removed "+fname(f, "g"))
			}
			return k
		}},
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		keys := p.keys()
		w.expect(keys)
		start := time.Now()
		if err := p.run(); err != nil {
			return nil, fmt.Errorf("burst, %s: %w", p.name, err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, _ := w.left()
			if n == 0 || time.Now().After(deadline) || w.ended.Load() {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		n, last := w.left()
		iwLast := iw.quiet(500*time.Millisecond, 30*time.Second)
		bp := burstPhase{name: p.name, ops: p.ops, implied: len(keys), missed: n, iwTime: iwLast.Sub(start)}
		if n == 0 {
			bp.gwTime = last.Sub(start)
		}
		res.phases = append(res.phases, bp)
		progress("burst %s: %d ops, gateway %s (%d missed), inotifywait %s", p.name, p.ops, bp.gwTime.Round(time.Millisecond), n, bp.iwTime.Round(time.Millisecond))
	}
	gw1, err1 := b.gw.cpuTime()
	iw1, err2 := iw.cpuTime()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	res.gwCPU, res.iwCPU = gw1-gw0, iw1-iw0
	res.kernelEvents = iw.lines.Load()
	res.iwOverflows = iw.overflows.Load()
	res.received = w.received.Load()
	res.overflowEvents = w.overflows.Load()
	over1, err := b.gw.metric(admin, "caddy_fs_notify_kernel_overflows_total")
	if err != nil {
		return nil, err
	}
	res.kernelOverflows = over1 - over0
	if prof != nil {
		if err := <-prof; err != nil {
			return nil, fmt.Errorf("profiling the gateway: %w", err)
		}
	}
	return res, nil
}

// burstRuns is how many times the burst is repeated: the CPU ratio of a
// shared machine varies from one to the next.
const burstRuns = 3

// burstRows are the rows of the repeated burst: ops/s per phase of the run
// whose CPU ratio is the median, the CPU per kernel event of that run with
// the range of the ratio over all runs, and deliveries over all runs.
func burstRows(runs []*burstResult) []row {
	ratio := func(r *burstResult) float64 {
		if r.iwCPU <= 0 {
			return 0
		}
		return float64(r.gwCPU) / float64(r.iwCPU)
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b *burstResult) int { return cmp.Compare(ratio(a), ratio(b)) })
	r := sorted[len(sorted)/2]
	blank := func() []string {
		c := make([]string, 11)
		for i := range c {
			c[i] = "–"
		}
		return c
	}
	var rows []row
	for _, p := range r.phases {
		c := blank()
		iwRate, gwRate := rate(p.ops, p.iwTime), rate(p.ops, p.gwTime)
		c[0], c[1] = fmtRate(iwRate), fmtRate(gwRate)
		if iwRate > 0 && gwRate > 0 {
			c[2] = fmt.Sprintf("%.2f", gwRate/iwRate)
		}
		c[10] = fmt.Sprintf("ops/s kept up with, inotifywait → gateway; %d ops, last event after %s → %s; %d/%d implied notifications, %d missed",
			p.ops, fmtDur(p.iwTime), fmtDur(p.gwTime), p.implied-p.missed, p.implied, p.missed)
		rows = append(rows, row{name: fmt.Sprintf("Notifier burst, %s, %s files in %d dirs", p.name, thousands(burstFiles), burstDirs), fixed: c})
	}
	c := blank()
	if r.kernelEvents > 0 {
		iw, gw := r.iwCPU/time.Duration(r.kernelEvents), r.gwCPU/time.Duration(r.kernelEvents)
		c[7] = fmtFine(iw) + " → " + fmtFine(gw)
		c[2] = fmt.Sprintf("%.2f (%.2f–%.2f)", ratio(r), ratio(sorted[0]), ratio(sorted[len(sorted)-1]))
	}
	c[10] = fmt.Sprintf("CPU per kernel event, inotifywait → gateway (ratio in etag/plain, median and range of %d bursts; target ≤ 3): %s kernel events, CPU %s → %s in the median burst",
		len(runs), thousands(int(r.kernelEvents)), fmtDur(r.iwCPU), fmtDur(r.gwCPU))
	rows = append(rows, row{name: "Notifier burst, CPU per kernel event", fixed: c})
	implied, missed := 0, 0
	var received, overflowEvents, iwOverflows int64
	var kernelOverflows float64
	for _, r := range runs {
		for _, p := range r.phases {
			implied += p.implied
			missed += p.missed
		}
		received += r.received
		overflowEvents += r.overflowEvents
		iwOverflows += r.iwOverflows
		kernelOverflows += r.kernelOverflows
	}
	overflowed := "no"
	if kernelOverflows > 0 || iwOverflows > 0 {
		overflowed = "yes"
	}
	c = blank()
	c[10] = fmt.Sprintf("over %d bursts: %d/%d implied notifications delivered to one subscriber, %d missed (%s received of every type); kernel queue overflowed at max_queued_events %s: %s (gateway %.0f, inotifywait %d); %d `event: overflow`",
		len(runs), implied-missed, implied, missed, thousands(int(received)), r.maxQueued, overflowed, kernelOverflows, iwOverflows, overflowEvents)
	rows = append(rows, row{name: "Notifier burst, notifications", fixed: c})
	return rows
}

func rate(ops int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(ops) / d.Seconds()
}

func fmtRate(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

// metric reads one counter (summed over its label sets) from the admin
// endpoint's Prometheus metrics.
func (g *gateway) metric(admin, name string) (float64, error) {
	resp, err := g.client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("admin /metrics: %s", resp.Status)
	}
	var sum float64
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, name) || len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ' {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, s.Err()
}

// procCPUTime returns the CPU time (user and system) process pid has used.
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// fmtFine writes durations under 100µs with a tenth of a microsecond.
func fmtFine(d time.Duration) string {
	if d > 0 && d < 100*time.Microsecond {
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
	return fmtDur(d)
}
