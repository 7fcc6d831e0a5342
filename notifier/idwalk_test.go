//go:build linux

package notifier

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestFileIDWalksShared asks for 1,000 file IDs that do not exist, 64 at a
// time, in a tree of 100,000 entries: lookups share the walk in progress,
// and an ID the last walk, finished less than a second ago, did not find
// is answered 404 without another. The walks are counted: about one per
// second of the run, not one per request. IDs that exist are still found,
// and a directory created meanwhile once that second is over.
func TestFileIDWalksShared(t *testing.T) {
	root := t.TempDir()
	var dirs []string
	for d := range 100 {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		testutil.Must(t, os.Mkdir(dir, 0o755))
		dirs = append(dirs, dir)
		first := filepath.Join(dir, "f000")
		testutil.Must(t, os.WriteFile(first, nil, 0o644))
		for f := 1; f < 1000; f++ { // hard links: one system call each
			testutil.Must(t, unix.Link(first, filepath.Join(dir, fmt.Sprintf("f%03d", f))))
		}
	}
	n, base := start(t, testConfig(root))

	const requests, parallel = 1000, 64
	statuses := make([]int, requests)
	began := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range requests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ref := fmt.Sprint(1_000_000_000_000 + rand.Uint64N(1_000_000_000_000))
			if i%100 == 0 {
				ref = inoOf(t, dirs[i/100])
			}
			resp, err := client().Get(streamURL(base, ref, ""))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	for i, st := range statuses {
		if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[i%100 == 0]; st != want {
			t.Errorf("request %d: status %d, want %d", i, st, want)
		}
	}
	n.walks.mu.Lock()
	walks := n.walks.count
	n.walks.mu.Unlock()
	if most := 2 + int(elapsed/time.Second); walks > most {
		t.Errorf("%d walks of the tree for %d requests in %s, want at most %d", walks, requests, elapsed.Round(time.Millisecond), most)
	}
	t.Logf("%d walks of %d entries for %d requests in %s", walks, 100_100, requests, elapsed.Round(time.Millisecond))

	// A directory created since the last walk is found once that walk is
	// stale.
	late := filepath.Join(dirs[0], "late")
	testutil.Must(t, os.Mkdir(late, 0o755))
	testutil.Eventually(t, "the new directory found by its ID", func() bool {
		resp, err := client().Get(streamURL(base, inoOf(t, late), ""))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
