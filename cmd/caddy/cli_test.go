//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// caddyBin is this package built once by TestMain: the binary users run.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "etaggate-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/caddy: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a child running caddyBin, its output read line by line.
type process struct {
	t        testing.TB
	cmd      *exec.Cmd
	stdout   chan string
	stderr   chan string
	done     chan struct{} // closed once the process has been waited for
	exitCode int
}

// spawn runs caddyBin with args; the test's end kills what is still
// running. The child dies with the test binary (Pdeathsig).
func spawn(t testing.TB, args ...string) *process {
	t.Helper()
	p := &process{t: t, cmd: exec.Command(caddyBin, args...), stdout: make(chan string, 10000), stderr: make(chan string, 10000), done: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	testutil.Must(t, err)
	errPipe, err := p.cmd.StderrPipe()
	testutil.Must(t, err)
	testutil.Must(t, p.cmd.Start())
	read := func(r io.Reader, lines chan<- string, finished chan<- struct{}) {
		s := bufio.NewScanner(r)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		finished <- struct{}{}
	}
	finished := make(chan struct{}, 2)
	go read(out, p.stdout, finished)
	go read(errPipe, p.stderr, finished)
	go func() {
		<-finished
		<-finished
		err := p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		if err != nil && p.exitCode < 0 {
			p.exitCode = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// line returns the next stdout line; ok is false once stdout is closed.
func (p *process) line() (string, bool) {
	p.t.Helper()
	select {
	case l, ok := <-p.stdout:
		return l, ok
	case <-time.After(15 * time.Second):
		p.t.Fatalf("no line on stdout within 15s")
		return "", false
	}
}

// expect reads stdout until want, failing if it does not come.
func (p *process) expect(want string) {
	p.t.Helper()
	var seen []string
	for {
		l, ok := p.line()
		if !ok {
			p.t.Fatalf("stdout ended before %q; it had %q", want, seen)
		}
		if l == want {
			return
		}
		seen = append(seen, l)
	}
}

// notice reads stderr until a line containing want.
func (p *process) notice(want string) string {
	p.t.Helper()
	var seen []string
	for {
		select {
		case l, ok := <-p.stderr:
			if !ok {
				p.t.Fatalf("stderr ended before %q; it had %q", want, seen)
			}
			if strings.Contains(l, want) {
				return l
			}
			seen = append(seen, l)
		case <-time.After(15 * time.Second):
			p.t.Fatalf("no %q on stderr within 15s; it had %q", want, seen)
		}
	}
}

// exit waits for the process to end and returns its status.
func (p *process) exit() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.exitCode
	case <-time.After(15 * time.Second):
		p.t.Fatalf("%s did not exit within 15s", strings.Join(p.cmd.Args, " "))
		return 0
	}
}

// gateway is a Caddy process of the same binary serving fs_notify over
// root on 127.0.0.1:port.
type gateway struct {
	*process
	port int
}

func startGateway(t testing.TB, root string, port int) *gateway {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	testutil.Must(t, os.WriteFile(cfg, fmt.Appendf(nil, `{
	admin off
	persist_config off
	auto_https off
}
http://127.0.0.1:%d {
	route {
		fs_notify {
			root %s
		}
	}
}
`, port, root), 0o600))
	g := &gateway{process: spawn(t, "run", "--config", cfg, "--adapter", "caddyfile"), port: port}
	testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return g
}

func (g *gateway) url() string { return fmt.Sprintf("http://127.0.0.1:%d", g.port) }

// stop ends the gateway as an operator would, with SIGTERM.
func (g *gateway) stop() {
	g.t.Helper()
	testutil.Must(g.t, g.cmd.Process.Signal(syscall.SIGTERM))
	g.exit()
}

// follow starts `caddy fs-notify` and waits until its stream is open.
func follow(t testing.TB, args ...string) *process {
	t.Helper()
	p := spawn(t, append([]string{"fs-notify"}, args...)...)
	p.notice("fs-notify: following ")
	return p
}

func mkdir(t testing.TB, path string) { testutil.Must(t, os.Mkdir(path, 0o755)) }
func touch(t testing.TB, path string) { testutil.Must(t, os.WriteFile(path, nil, 0o644)) }
