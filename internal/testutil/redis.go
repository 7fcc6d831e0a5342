package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server of the test's own, on 127.0.0.1, with no
// persistence: a restart starts empty, as a Redis without AOF or RDB does
// after a crash.
type Redis struct {
	t    testing.TB
	Addr string // host:port
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// StartRedis starts Debian's redis-server on a free port and stops it by
// PID when the test ends. It fails the test when redis-server is not
// installed.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (%v): the cluster tests need Debian's redis-server; scripts/test installs it (apt-get install redis-server)", err)
	}
	r := &Redis{t: t, dir: t.TempDir()}
	var err error
	for range 5 { // the free port may be taken between the probe and the bind
		r.port = FreePort(t)
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	t.Cleanup(r.stop)
	return r
}

func (r *Redis) start() error {
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--daemonize", "no", "--loglevel", "warning", "--logfile", "")
	out, err := os.Create(fmt.Sprintf("%s/redis-%d.log", r.dir, r.port))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	addr := fmt.Sprintf("127.0.0.1:%d", r.port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			r.cmd, r.done = cmd, done
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(out.Name())
			return fmt.Errorf("redis-server on port %d exited: %s", r.port, strings.TrimSpace(string(log)))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d does not answer PING", r.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
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
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// PID is the server's process id.
func (r *Redis) PID() int { return r.cmd.Process.Pid }

// Kill stops the server with SIGKILL, as a crash would, and waits for it.
func (r *Redis) Kill() {
	r.t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// Restart starts a new, empty server on the same port after Kill.
func (r *Redis) Restart() {
	r.t.Helper()
	if r.cmd != nil {
		r.Kill()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("restarting redis-server on %s: %v", r.Addr, err)
		}
		time.Sleep(50 * time.Millisecond) // the port may linger briefly
	}
}

// Pause stops the server with SIGSTOP, and returns once it has stopped:
// connections stay open and nothing answers, as with a Redis that hangs.
// Resume undoes it.
func (r *Redis) Pause() {
	r.t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGSTOP)
	deadline := time.Now().Add(10 * time.Second)
	for !stopped(r.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not stop within 10s of SIGSTOP", r.Addr)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused server.
func (r *Redis) Resume() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

func (r *Redis) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
	r.cmd = nil
}
