//go:build linux

package notifier

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etaggate/etaggate/sse"
)

// BenchmarkFanout measures one directory watched by 1,000 and 10,000
// subscribers over real HTTP connections. Each iteration creates one file
// and waits until every subscriber has received its notification.
//
// The subscribers run in a child process (this test binary re-executed),
// so the two ends do not share a file descriptor limit, and so that the
// server's memory per idle subscriber is measured on its own.
//
// Reported: p50-ms and p99-ms, the delay from the file operation to each
// subscriber's receipt of it, over every (operation, subscriber) pair; and
// server-B/idle-sub, the server's heap and stacks per connected subscriber
// (HTTP connection, handler goroutine and hub state).
//
//	go test -run '^$' -bench Fanout -benchtime 30x ./notifier/
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{1000, 10000} {
		for _, batch := range []time.Duration{-1, sse.DefaultBatch} {
			name := fmt.Sprintf("subs=%d/batch=%s", subs, batch)
			if batch < 0 {
				name = fmt.Sprintf("subs=%d/batch=none", subs)
			}
			b.Run(name, func(b *testing.B) { benchFanout(b, subs, batch) })
		}
	}
}

func benchFanout(b *testing.B, subs int, batch time.Duration) {
	root := b.TempDir()
	cfg := DefaultConfig()
	cfg.Root = root
	cfg.Hub.Batch, cfg.Hub.MaxSubscribers = batch, subs+10
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(n)
	srv.Config.ErrorLog = nil
	srv.Start()
	defer func() {
		_ = n.Close()
		srv.Close()
	}()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestFanoutClients$", "-test.v")
	cmd.Env = append(os.Environ(),
		"FANOUT_URL="+srv.URL+"/v1/files/%2F/notify",
		"FANOUT_SUBS="+strconv.Itoa(subs))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		for out.Scan() {
			if line := out.Text(); strings.HasPrefix(line, prefix) {
				return strings.TrimPrefix(line, prefix)
			}
		}
		b.Fatalf("child ended before %q: %v", prefix, out.Err())
		return ""
	}
	expect("ready")

	runtime.GC()
	var idle runtime.MemStats
	runtime.ReadMemStats(&idle)
	if st := n.Stats(); st.Subscribers != subs {
		b.Fatalf("%d subscribers connected, want %d", st.Subscribers, subs)
	}
	perSub := float64(int64(idle.HeapInuse+idle.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / float64(subs)

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(stdin, "op %d %d\n", i, time.Now().UnixNano())
		f, err := os.Create(filepath.Join(root, "f"+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		if got := expect("done "); got != strconv.Itoa(i) {
			b.Fatalf("done %s, want %d", got, i)
		}
	}
	b.StopTimer()
	stdin.Close()
	var p50, p99 float64
	if _, err := fmt.Sscanf(expect("latency "), "%g %g", &p50, &p99); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(perSub, "server-B/idle-sub")
}

// TestFanoutClients is BenchmarkFanout's child process: it opens
// FANOUT_SUBS streams on FANOUT_URL, then for each "op <i> <start ns>" read
// from stdin waits for every stream to receive f<i> and prints "done <i>".
// On end of input it prints the latency percentiles in milliseconds.
func TestFanoutClients(t *testing.T) {
	target := os.Getenv("FANOUT_URL")
	if target == "" {
		t.Skip("run by BenchmarkFanout")
	}
	subs, _ := strconv.Atoi(os.Getenv("FANOUT_SUBS"))
	u, _ := http.NewRequest("GET", target, nil)

	var (
		mu      sync.Mutex
		ops     = map[int]*opState{}
		doneOps = make(chan int, 1024)
	)
	state := func(i int) *opState {
		mu.Lock()
		defer mu.Unlock()
		o := ops[i]
		if o == nil {
			o = &opState{arrivals: make([]int64, subs)}
			o.remaining.Store(int32(subs))
			ops[i] = o
		}
		return o
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	var ready sync.WaitGroup
	ready.Add(subs)
	for s := range subs {
		sem <- struct{}{}
		conn, err := net.Dial("tcp", u.URL.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.URL.RequestURI(), u.URL.Host)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			r := bufio.NewReaderSize(conn, 4096)
			opened := false
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					if !opened {
						ready.Done()
						<-sem
					}
					return
				}
				if !opened && bytes.HasPrefix(line, []byte(": watching")) {
					opened = true
					ready.Done()
					<-sem
					continue
				}
				if !bytes.HasPrefix(line, []byte("data: ")) {
					continue
				}
				now := time.Now().UnixNano()
				for rest := line; ; {
					k := bytes.Index(rest, []byte(`"path":"f`))
					if k < 0 {
						break
					}
					rest = rest[k+len(`"path":"f`):]
					end := bytes.IndexByte(rest, '"')
					i, err := strconv.Atoi(string(rest[:end]))
					if err != nil {
						break
					}
					o := state(i)
					o.arrivals[s] = now
					if o.remaining.Add(-1) == 0 {
						doneOps <- i
					}
				}
			}
		}()
	}
	ready.Wait()
	fmt.Println("ready")

	go func() {
		for i := range doneOps {
			fmt.Printf("done %d\n", i)
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var i int
		var start int64
		if _, err := fmt.Sscanf(in.Text(), "op %d %d", &i, &start); err == nil {
			state(i).start.Store(start)
		}
	}
	mu.Lock()
	var lat []float64
	for _, o := range ops {
		for _, a := range o.arrivals {
			if a != 0 {
				lat = append(lat, float64(a-o.start.Load())/1e6)
			}
		}
	}
	mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		fmt.Println("latency 0 0")
		return
	}
	fmt.Printf("latency %g %g\n", lat[len(lat)/2], lat[len(lat)*99/100])
}

type opState struct {
	start     atomic.Int64
	remaining atomic.Int32
	arrivals  []int64
}

// BenchmarkIdleSubscription measures what the hub itself keeps per idle
// subscriber on one directory (B/idle-sub, from 10,000 of them), without
// the HTTP connection around it; each iteration subscribes and leaves once
// more.
//
//	go test -run '^$' -bench IdleSubscription ./notifier/
func BenchmarkIdleSubscription(b *testing.B) {
	root := b.TempDir()
	cfg := DefaultConfig()
	cfg.Root = root
	cfg.Hub.MaxSubscribers = 1 << 30
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	const subs = 10000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	all := make([]*sse.Stream, 0, subs)
	for range subs {
		fd, rel, err := n.resolve("%2F")
		if err != nil {
			b.Fatal(err)
		}
		s, err := n.subscribe(fd, rel, false, AllTypes, sse.Subscription[change]{})
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perSub := float64(after.HeapAlloc-before.HeapAlloc) / subs
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		fd, rel, err := n.resolve("%2F")
		if err != nil {
			b.Fatal(err)
		}
		s, err := n.subscribe(fd, rel, false, AllTypes, sse.Subscription[change]{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.StopTimer()
	b.ReportMetric(perSub, "B/idle-sub")
	for _, s := range all {
		s.Close()
	}
}
