package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// moduleRoot returns the directory of the etaggate module the command runs in.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the etaggate repository, e.g. `go run ./bench`")
	}
	return filepath.Dir(gomod), nil
}

// buildGateway builds ./cmd/caddy of the module at root into dir.
func buildGateway(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "caddy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the gateway (go build ./cmd/caddy in %s) failed: %w\n%s", root, err, out)
	}
	return bin, nil
}

// listModules returns the Caddy module IDs compiled into bin.
func listModules(ctx context.Context, bin string) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, bin, "list-modules").Output()
	if err != nil {
		return nil, fmt.Errorf("%s list-modules: %w", bin, err)
	}
	mods := make(map[string]bool)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			mods[f[0]] = true
		}
	}
	return mods, nil
}

// gatewayConfig is what the Caddyfile template needs.
type gatewayConfig struct {
	Admin, Upstream                string
	Plain, Etag, EtagCache, Notify int
	// The PUT sites again with etag_after_write off: one upstream trip less.
	EtagNoAfter, EtagCacheNoAfter int
	// F: etag with json_ignore, for the semantic GET row.
	EtagJSON   int
	JSONIgnore string
	// G: F with its other json_ignore, when set.
	EtagJSONItems   int
	JSONIgnoreItems string
	// H, I: B with revalidate cache, and B with a change feed at /changes.
	EtagRevalidate, EtagChanges int
	HaveEtag, HaveNotify        bool
	EtagExtra                   string
	NotifyRoot                  string
	Batch                       time.Duration
	MaxSubscribers              int
	// Redis, when set, makes the gateway a cluster replica on that Redis.
	Redis string
}

var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.Admin}}
	auto_https off
	persist_config off
	log {
		level ERROR
	}
{{- if .Redis}}
	etaggate {
		redis {{.Redis}}
	}
{{- end}}
}

# A: the plain gateway etaggate replaces.
:{{.Plain}} {
	bind 127.0.0.1
	reverse_proxy {{.Upstream}}
}

# B: the same with etag (verify upstream, the default).
:{{.Etag}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

# C: etag with verify cache, for conditional PUT.
:{{.EtagCache}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		verify cache
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

# D and E: B and C without the read after a write.
:{{.EtagNoAfter}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		etag_after_write off
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

:{{.EtagCacheNoAfter}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		verify cache
		etag_after_write off
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

# H: B with revalidate cache: If-None-Match answered from the cache.
:{{.EtagRevalidate}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		revalidate cache
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

# I: B with a change feed.
:{{.EtagChanges}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		changes /changes {
			batch {{.Batch}}
			max_subscribers {{.MaxSubscribers}}
		}
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}

{{- if .EtagJSONItems}}

# G: F leaving out a member of every item too: names matched all through.
:{{.EtagJSONItems}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		json_ignore {{.JSONIgnoreItems}}
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}
{{- end}}

# F: etag with semantic ETags: a top-level member left out, as APIs put
# generated_at.
:{{.EtagJSON}} {
	bind 127.0.0.1
{{- if .HaveEtag}}
	etag {
		json_ignore {{.JSONIgnore}}
{{- if .EtagExtra}}
		{{.EtagExtra}}
{{- end}}
	}
{{- end}}
	reverse_proxy {{.Upstream}}
}
{{if .HaveNotify}}
# Change notifications for a temporary directory.
:{{.Notify}} {
	bind 127.0.0.1
	handle /v1/files/* {
		fs_notify {
			root {{.NotifyRoot}}
			batch {{.Batch}}
			max_subscribers {{.MaxSubscribers}}
		}
	}
}
{{end}}`))

func writeCaddyfile(path string, cfg gatewayConfig) error {
	var b bytes.Buffer
	if err := caddyfileTemplate.Execute(&b, cfg); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// gateway is the Caddy child process under test.
type gateway struct {
	cmd     *exec.Cmd
	admin   string
	logPath string
	exited  chan struct{}
	waitErr error
	client  *http.Client
}

// startGateway runs bin with the Caddyfile at cfgPath and waits until the
// admin endpoint and every address in ports accept connections.
func startGateway(ctx context.Context, bin, cfgPath, dir, admin string, addrs []string) (*gateway, error) {
	logPath := filepath.Join(dir, "gateway.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Keep Caddy's data and config directories out of the user's home.
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	// Its own process group, so a terminal's Ctrl-C reaches only the harness,
	// which then stops the gateway in order; and killed if the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the gateway %s: %w", bin, err)
	}
	g := &gateway{
		cmd:     cmd,
		admin:   admin,
		logPath: logPath,
		exited:  make(chan struct{}),
		client:  &http.Client{Timeout: 60 * time.Second},
	}
	go func() {
		g.waitErr = cmd.Wait()
		close(g.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range append([]string{admin}, addrs...) {
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-g.exited:
				return nil, fmt.Errorf("the gateway exited during startup (%v); its log:\n%s", g.waitErr, g.logTail(30))
			case <-ctx.Done():
				g.stop()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				g.stop()
				return nil, fmt.Errorf("the gateway did not listen on %s within 30s; its log:\n%s", addr, g.logTail(30))
			}
		}
	}
	return g, nil
}

// stop asks Caddy to shut down gracefully and kills it if it has not exited
// within 5s.
func (g *gateway) stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		g.cmd.Process.Kill()
		<-g.exited
	}
}

func (g *gateway) alive() error {
	select {
	case <-g.exited:
		return fmt.Errorf("the gateway exited (%v); its log:\n%s", g.waitErr, g.logTail(30))
	default:
		return nil
	}
}

func (g *gateway) logTail(n int) string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (g *gateway) get(path string) ([]byte, error) {
	resp, err := g.client.Get("http://" + g.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// memStats is the part of the gateway's runtime.MemStats the harness reads,
// through Caddy's admin /debug/vars.
type memStats struct {
	Mallocs     uint64
	TotalAlloc  uint64
	HeapInuse   uint64
	StackInuse  uint64
	NumGC       uint32
	HeapObjects uint64
}

func (g *gateway) memStats() (memStats, error) {
	b, err := g.get("/debug/vars")
	if err != nil {
		return memStats{}, err
	}
	var v struct {
		Memstats memStats `json:"memstats"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return memStats{}, fmt.Errorf("admin /debug/vars: %w", err)
	}
	return v.Memstats, nil
}

// collectGarbage forces a GC in the gateway (pprof's heap?gc=1) so that heap
// figures are of live memory.
func (g *gateway) collectGarbage() error {
	_, err := g.get("/debug/pprof/heap?gc=1")
	return err
}

// goroutines returns the number of goroutines in the gateway.
func (g *gateway) goroutines() (int, error) {
	b, err := g.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	// "goroutine profile: total 42"
	line, _, _ := bytes.Cut(b, []byte("\n"))
	_, total, ok := bytes.Cut(line, []byte("total "))
	if !ok {
		return 0, fmt.Errorf("admin goroutine profile: unexpected first line %q", line)
	}
	return strconv.Atoi(string(bytes.TrimSpace(total)))
}

// save writes the gateway's current pprof profile kind to path.
func (g *gateway) save(kind, path string) error {
	b, err := g.get("/debug/pprof/" + kind)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// rss returns the gateway's resident set size in bytes.
func (g *gateway) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("VmRSS not found in /proc/<pid>/status")
}

// cpuTime returns the CPU time (user and system) the gateway has used.
func (g *gateway) cpuTime() (time.Duration, error) { return procCPUTime(g.cmd.Process.Pid) }

// profile saves the gateway's CPU profile and allocation delta profile over
// the next d into dir/<name>.{cpu,allocs}.pprof. It returns at once; wait
// for the returned channel before the next profile.
func (g *gateway) profile(dir, name string, d time.Duration) <-chan error {
	done := make(chan error, 2)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	save := func(kind, path string) {
		b, err := g.get(fmt.Sprintf("/debug/pprof/%s?seconds=%d", kind, secs))
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		done <- err
	}
	go save("profile", filepath.Join(dir, name+".cpu.pprof"))
	go save("allocs", filepath.Join(dir, name+".allocs.pprof"))
	out := make(chan error, 1)
	go func() { out <- errors.Join(<-done, <-done) }()
	return out
}
