//go:build linux

package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// notifyAs sends GET or another method to base with the given Host.
func notifyAs(t *testing.T, host, method, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	testutil.Must(t, err)
	req.Host = host
	res, err := testutil.Client().Do(req)
	testutil.Must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	testutil.Must(t, err)
	return res, string(b)
}

// TestFSNotifyHandleErrors: with handle_errors, every refusal of fs_notify
// reaches the site's error routes with its status ({err.status_code},
// {err.message}), keeping the headers that belong to the answer (Allow,
// Retry-After); a site on the same server without handle_errors still
// gets problem documents.
func TestFSNotifyHandleErrors(t *testing.T) {
	root := t.TempDir()
	testutil.Must(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	writeFile(t, filepath.Join(root, "file"), "x")
	block := fmt.Sprintf("\tfs_notify {\n\t\troot %s\n\t\tmax_subscribers 1\n\t}\n", root)
	base := testutil.Start(t, "http://rendered.test:{port} {\n\tbind 127.0.0.1\n\thandle_errors {\n\t\trespond \"rendered {err.status_code}: {err.message}\"\n\t}\n"+block+"}\n"+
		"http://plain.test:{port} {\n\tbind 127.0.0.1\n"+block+"}\n")
	host := strings.TrimPrefix(base, "http://127.0.0.1")

	cases := []struct {
		name, method, ref, query string
		status                   int
		keep                     string // a header that belongs to the answer
	}{
		{"unknown ref", "GET", "nope", "", 404, ""},
		{"outside root", "GET", "..", "", 404, ""},
		{"a file", "GET", "file", "", 400, ""},
		{"unknown filter", "GET", "sub", "filter=child_bogus", 400, ""},
		{"bad recursive", "GET", "sub", "recursive=yes", 400, ""},
		{"POST", "POST", "sub", "", 405, "Allow"},
	}
	check := func(c struct {
		name, method, ref, query string
		status                   int
		keep                     string
	}) {
		t.Helper()
		u := notifyURL(base, c.ref, c.query)
		res, body := notifyAs(t, "rendered.test"+host, c.method, u)
		if res.StatusCode != c.status || !strings.HasPrefix(body, fmt.Sprintf("rendered %d: ", c.status)) || len(body) < len("rendered 400: x") {
			t.Errorf("%s: %d %q, want %d rendered by handle_errors with the detail", c.name, res.StatusCode, body, c.status)
		}
		if ct := res.Header.Get("Content-Type"); strings.Contains(ct, "problem") {
			t.Errorf("%s: the rendered error is a problem document (%s)", c.name, ct)
		}
		plain, pbody := notifyAs(t, "plain.test"+host, c.method, u)
		if plain.StatusCode != c.status || plain.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(pbody, `"status":`) {
			t.Errorf("%s without handle_errors: %d %s %q, want a problem document", c.name, plain.StatusCode, plain.Header.Get("Content-Type"), pbody)
		}
		if c.keep != "" && (res.Header.Get(c.keep) == "" || res.Header.Get(c.keep) != plain.Header.Get(c.keep)) {
			t.Errorf("%s: %s %q rendered, %q plain; want it on both", c.name, c.keep, res.Header.Get(c.keep), plain.Header.Get(c.keep))
		}
	}
	for _, c := range cases {
		check(c)
	}

	// max_subscribers 1 (each site has a handler of its own): the second
	// stream is refused with Retry-After.
	for _, h := range []string{"rendered.test", "plain.test"} {
		s := ssetest.MustOpen(t, &http.Client{Transport: hostTransport{h + host}}, notifyURL(base, "sub", ""), nil)
		defer s.Close()
	}
	check(struct {
		name, method, ref, query string
		status                   int
		keep                     string
	}{"max_subscribers", "GET", "sub", "", 503, "Retry-After"})
}

// hostTransport sends every request with Host h.
type hostTransport struct{ h string }

func (t hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = t.h
	return http.DefaultTransport.RoundTrip(r)
}
