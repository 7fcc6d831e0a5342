package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildCaddy builds this module's cmd/caddy into dir and returns the
// binary's path. It is meant for TestMain: one build per test run.
func BuildCaddy(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %w\n%s", err, out)
	}
	return bin, nil
}

// Process is a gateway binary running a Caddyfile in a process of its own,
// as one replica of a cluster is.
type Process struct {
	t    testing.TB
	URL  string // http://127.0.0.1:<port>
	cmd  *exec.Cmd
	log  string // the process's stdout and stderr
	done chan struct{}
}

// StartProcess runs bin with caddyfile, in which every "{port}" is
// replaced by a free port, waits until it listens and stops it by PID when
// the test ends. The kernel kills it if the test binary dies.
func StartProcess(t testing.TB, bin, caddyfile string) *Process {
	t.Helper()
	port := FreePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	Must(t, os.WriteFile(cfg, []byte(strings.ReplaceAll(caddyfile, "{port}", fmt.Sprint(port))), 0o600))
	p := &Process{t: t, URL: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, "log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	Must(t, err)
	defer out.Close()
	p.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	Must(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(30 * time.Second)
	for !listening(fmt.Sprintf("127.0.0.1:%d", port)) {
		select {
		case <-p.done:
			t.Fatalf("gateway exited before listening:\n%s", p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not listening on port %d after 30s:\n%s", port, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// Log returns what the process wrote so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Kill sends SIGKILL, as a crash would: nothing is cleaned up.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pause stops the process with SIGSTOP, and returns once every thread of
// it has stopped: on a busy machine a thread may run on for milliseconds
// after the signal is sent. Its sockets stay open and its clocks run on.
// Resume continues it.
func (p *Process) Pause() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	deadline := time.Now().Add(10 * time.Second)
	for !stopped(p.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("gateway %s did not stop within 10s of SIGSTOP", p.URL)
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether every thread of pid is in the stopped state.
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused process.
func (p *Process) Resume() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

func (p *Process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
	if p.t.Failed() {
		p.t.Logf("gateway %s log:\n%s", p.URL, p.Log())
	}
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// PID returns the process's ID, for reading /proc/<pid>.
func (p *Process) PID() int { return p.cmd.Process.Pid }
