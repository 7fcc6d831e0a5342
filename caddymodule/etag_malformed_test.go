package caddymodule

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// TestCaddyETagMalformedHeaderClipped: under a raised max_header_size, a
// megabyte of malformed header is refused with a problem body, and neither
// that body nor the log line quotes more than a few hundred bytes of it.
func TestCaddyETagMalformedHeaderClipped(t *testing.T) {
	up := startWrUpstream(t)
	up.set("/big", "v1", time.Now())
	logFile := filepath.Join(t.TempDir(), "etag.log")
	global := "servers {\n\tmax_header_size 4MB\n}\n" +
		"log etag {\n\toutput file " + logFile + "\n\tinclude http.handlers.etag\n\tlevel INFO\n}"
	base := testutil.StartWith(t, global, ":{port} {\n\tbind 127.0.0.1\n\tetag {\n\t\trequire_precondition\n\t}\n\treverse_proxy "+up.addr+"\n}\n")

	const size = 1 << 20
	many := strings.Repeat(`"a" `, size/4)
	long := strings.Repeat("a", size)
	const maxBody, maxLine = 2048, 4096
	for _, tc := range []struct {
		name    string
		methods []string
		header  []string
		status  int
	}{
		{"If-Match without commas", []string{http.MethodGet, http.MethodPut}, []string{"If-Match: " + many}, 400},
		{"If-None-Match, a long tag then garbage", []string{http.MethodGet, http.MethodPut}, []string{`If-None-Match: "` + long + `" x`}, 400},
		{"If-Match unquoted", []string{http.MethodGet, http.MethodPut}, []string{"If-Match: " + long}, 400},
		{"If-Match, no closing quote", []string{http.MethodGet, http.MethodPut}, []string{`If-Match: "` + long}, 400},
		{"If-Unmodified-Since garbage", []string{http.MethodPut}, []string{"If-Unmodified-Since: " + long}, 428},
		{"method overrides that disagree", []string{http.MethodPost}, []string{"X-HTTP-Method-Override: PATCH", "X-HTTP-Method: " + long}, 400},
	} {
		for _, method := range tc.methods {
			what := method + " " + tc.name
			r := wrDo(t, method, base+"/big", "", tc.header...)
			p := wrProblem(t, what, r, tc.status)
			if len(r.body) > maxBody {
				t.Errorf("%s: a %d-byte problem body, want at most %d", what, len(r.body), maxBody)
			}
			if d := p["detail"].(string); !strings.Contains(d, "…") {
				t.Errorf("%s: the detail quotes no clipped value: %s", what, d)
			}
		}
	}
	if n := len(up.writesTo("/big")); n != 0 {
		t.Fatalf("%d writes forwarded", n)
	}

	// Each refusal was logged, in a line of bounded length.
	var lines []string
	testutil.Eventually(t, "the refusals are logged", func() bool {
		lines = logLines(t, logFile)
		return len(lines) >= 10
	})
	for _, l := range lines {
		if len(l) > maxLine {
			t.Errorf("a %d-byte log line, want at most %d: %.300s…", len(l), maxLine, l)
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(l), &entry); err != nil {
			t.Errorf("log line %.300s: %v", l, err)
		}
	}
}

// logLines reads a Caddy log file's lines; a file not yet created has none.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	testutil.Must(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	testutil.Must(t, sc.Err())
	return out
}
