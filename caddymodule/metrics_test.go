package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// TestMetrics scrapes Caddy's metrics handler for the counters both modules
// register in the configuration's registry.
func TestMetrics(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	testutil.Must(t, err)
	base := testutil.Start(t, fmt.Sprintf(`:{port} {
	bind 127.0.0.1
	route {
		metrics /metrics
		fs_notify {
			root %s
		}
		etag
		respond "hello"
	}
}
`, root))
	client := testutil.Client()
	res, err := client.Get(base + "/doc")
	testutil.Must(t, err)
	res.Body.Close()
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on the GET")
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/doc", nil)
	req.Header.Set("If-None-Match", etag)
	res, err = client.Do(req)
	testutil.Must(t, err)
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %d", res.StatusCode)
	}

	stream := ssetest.MustOpen(t, testutil.Client(), notifyURL(base, encRef("/"), ""), nil)
	defer stream.Close()

	res, err = client.Get(base + "/metrics")
	testutil.Must(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`caddy_etag_requests_total{outcome="tagged"} 1`,
		`caddy_etag_requests_total{outcome="not_modified"} 1`,
		`caddy_etag_requests_total{outcome="precondition_failed"} 0`,
		fmt.Sprintf(`caddy_fs_notify_subscribers{prefix="/v1/files",root=%q} 1`, root),
		fmt.Sprintf(`caddy_fs_notify_watches{prefix="/v1/files",root=%q} 1`, root),
		fmt.Sprintf(`caddy_fs_notify_frames_total{prefix="/v1/files",root=%q} 0`, root),
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
