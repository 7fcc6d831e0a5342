//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/etaggate/etaggate/internal/testutil"
)

// itemStore is a legacy API on 127.0.0.1 that stores what it is sent:
// PUT and DELETE /<path>, POST /items creates /items/<n> (201, Location).
type itemStore struct {
	mu    sync.Mutex
	items map[string][]byte
	next  int
}

func (s *itemStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		b, ok := s.items[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		s.items[r.URL.Path] = b
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		s.next++
		path := fmt.Sprintf("/items/%d", s.next+100)
		s.items[path], _ = io.ReadAll(r.Body)
		w.Header().Set("Location", path)
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		delete(s.items, r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	}
}

// startFeedGateway runs a gateway process with etag's change feed at
// /changes in front of api.
func startFeedGateway(t *testing.T, api string) string {
	t.Helper()
	port := testutil.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	testutil.Must(t, os.WriteFile(cfg, fmt.Appendf(nil, `{
	admin off
	persist_config off
	auto_https off
}
:%d {
	bind 127.0.0.1
	etag {
		changes /changes
	}
	reverse_proxy %s
}
`, port, api), 0o600))
	spawn(t, "run", "--config", cfg, "--adapter", "caddyfile")
	testutil.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

func feedWrite(t *testing.T, method, url, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	testutil.Must(t, err)
	resp, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, url, resp.Status)
	}
}

// TestFSNotifyCLIChanges follows etag's change feed with --changes: one
// line per write through the gateway, limited to a prefix by the feed,
// and to types by the client; --json prints the feed's objects.
func TestFSNotifyCLIChanges(t *testing.T) {
	api := httptest.NewServer(&itemStore{items: map[string][]byte{}})
	t.Cleanup(api.Close)
	base := startFeedGateway(t, api.Listener.Addr().String())

	lines := follow(t, "--url", base+"/changes", "--changes", "--filter-prefix", "/items/")
	removals := follow(t, "--url", base+"/changes", "--changes", "--filter", "resource_removed")
	objects := follow(t, "--url", base+"/changes", "--changes", "--json", "--filter-prefix", "/items/1")

	feedWrite(t, "PUT", base+"/other/1", `{"x":1}`) // outside /items/
	feedWrite(t, "PUT", base+"/items/1", `{"name":"widget"}`)
	feedWrite(t, "POST", base+"/items", `{"name":"gadget"}`)
	feedWrite(t, "DELETE", base+"/items/1", "")
	for _, want := range []string{"resource_updated\t/items/1", "resource_created\t/items/101", "resource_removed\t/items/1"} {
		if l, _ := lines.line(); l != want {
			t.Fatalf("--filter-prefix /items/: line %q, want %q", l, want)
		}
	}
	if l, _ := removals.line(); l != "resource_removed\t/items/1" {
		t.Errorf("--filter resource_removed: line %q", l)
	}

	var first struct {
		Type, Path, Method string
		ETag               *string `json:"etag"`
	}
	l, _ := objects.line()
	if err := json.Unmarshal([]byte(l), &first); err != nil || first.Type != "resource_updated" || first.Path != "/items/1" || first.Method != "PUT" || first.ETag == nil || !strings.HasPrefix(*first.ETag, `"`) {
		t.Fatalf("--json: line %q: %+v, %v; want the PUT's change with its new ETag", l, first, err)
	}
}
