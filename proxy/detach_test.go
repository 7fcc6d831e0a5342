package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

type detachedKey struct{}

// TestGatewayGETsRunDetached checks that the check GET and the read after
// the write run in a context derived by Config.Detach, while the write
// itself goes upstream in the client's own.
func TestGatewayGETsRunDetached(t *testing.T) {
	s := newWrStore(map[string]string{"/a": "v1"})
	var mu sync.Mutex
	detached := map[string][]bool{}
	s.setBefore(func(r *http.Request) error {
		mu.Lock()
		defer mu.Unlock()
		detached[r.Method] = append(detached[r.Method], r.Context().Value(detachedKey{}) != nil)
		return nil
	})
	cfg := DefaultConfig()
	cfg.Detach = func(ctx context.Context) context.Context {
		return context.WithValue(ctx, detachedKey{}, true)
	}
	_, base := wrGateway(t, cfg, s)
	r, err := wrDo(t, context.Background(), http.MethodPut, base+"/a", "v2", "If-Match", hashing.XXH3.Sum([]byte("v1")))
	if err != nil {
		t.Fatal(err)
	}
	if r.status/100 != 2 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := detached[http.MethodGet]; len(got) != 2 || !got[0] || !got[1] {
		t.Errorf("GETs detached: %v, want the check and the read after the write both detached", got)
	}
	if got := detached[http.MethodPut]; len(got) != 1 || got[0] {
		t.Errorf("PUTs detached: %v, want the one write in the client's own context", got)
	}
}
