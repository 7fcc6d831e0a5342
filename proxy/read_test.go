package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
)

// The read-path tests run the middleware as a real server on 127.0.0.1 in
// front of httputil.ReverseProxy and a real upstream server, as Caddy's
// reverse_proxy would.

// readLastModified is the Last-Modified of the test resources.
var readLastModified = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// readBody is the representation the test upstreams serve.
var readBody = []byte("hello, conditional world\n")

// readGateway is a middleware served on 127.0.0.1 in front of an upstream.
type readGateway struct {
	url    string
	m      *Middleware
	client *http.Client
}

// startReadGateway serves upstream on 127.0.0.1 and the middleware in front
// of it, reached through a reverse proxy.
func startReadGateway(t *testing.T, cfg Config, upstream http.Handler) *readGateway {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	gw := httptest.NewUnstartedServer(m.Wrap(rp))
	gw.Config.ErrorLog = log.New(io.Discard, "", 0)
	gw.Start()
	t.Cleanup(gw.Close)
	return &readGateway{
		url: gw.URL,
		m:   m,
		client: &http.Client{
			Transport: &http.Transport{DisableCompression: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
			Timeout: 30 * time.Second,
		},
	}
}

// do sends a request with the given header lines, each "Name: value", and
// returns the response with its body read.
func (g *readGateway) do(t *testing.T, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, g.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("bad header line %q", h)
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	res, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res, b
}

// plainUpstream serves readBody with a Last-Modified and ignores every
// conditional header, like the legacy APIs etaggate stands in front of.
func plainUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Last-Modified", readLastModified.Format(http.TimeFormat))
		_, _ = w.Write(readBody)
	})
}

// datedUpstream serves readBody through http.ServeContent without an ETag,
// so it answers If-Modified-Since and If-Unmodified-Since itself, like a
// file store that knows dates but not entity-tags.
func datedUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, "", readLastModified, bytes.NewReader(readBody))
	})
}

// oracleStatus is what net/http's own RFC 9110 §13.2.2 implementation
// answers for a representation with this ETag and Last-Modified.
func oracleStatus(method string, header http.Header, etag string) int {
	req := httptest.NewRequest(method, "/r", nil)
	req.Header = header.Clone()
	rec := httptest.NewRecorder()
	rec.Header().Set("Etag", etag)
	http.ServeContent(rec, req, "", readLastModified, bytes.NewReader(readBody))
	return rec.Code
}

// Precondition values. The entity-tag of readBody is tagged E in the tables.
var (
	dateBefore  = readLastModified.Add(-time.Hour).Format(http.TimeFormat)
	dateEqual   = readLastModified.Format(http.TimeFormat)
	dateAfter   = readLastModified.Add(time.Hour).Format(http.TimeFormat)
	dateInvalid = "yesterday, around noon"
)

// expandE replaces E in a header line by the current entity-tag.
func expandE(lines []string, etag string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		name, value, _ := strings.Cut(l, ":")
		value = strings.ReplaceAll(value, "E", etag)
		out[i] = name + ":" + value
	}
	return out
}

// repeatsField reports whether a field has several lines.
func repeatsField(lines []string) bool {
	for _, v := range headerOf(lines) {
		if len(v) > 1 {
			return true
		}
	}
	return false
}

func headerOf(lines []string) http.Header {
	h := http.Header{}
	for _, l := range lines {
		name, value, _ := strings.Cut(l, ":")
		h.Add(name, strings.TrimSpace(value))
	}
	return h
}

// TestReadPreconditionPrecedence spells out the RFC 9110 §13.2.2 cases that
// decide precedence, with the expected status written by hand.
func TestReadPreconditionPrecedence(t *testing.T) {
	cases := []struct {
		name   string
		header []string // E stands for the current entity-tag
		want   int
	}{
		{"none", nil, 200},

		{"If-Match true", []string{"If-Match: E"}, 200},
		{"If-Match false", []string{`If-Match: "other"`}, 412},
		{"If-Match star", []string{"If-Match: *"}, 200},
		{"If-Match weak tag fails strong comparison", []string{"If-Match: W/E"}, 412},
		{"If-Match list with a match", []string{`If-Match: "a", E, "b"`}, 200},
		{"If-Match list over several lines", []string{`If-Match: "a"`, "If-Match: E"}, 200},
		{"If-Match true ignores If-Unmodified-Since false", []string{"If-Match: E", "If-Unmodified-Since: " + dateBefore}, 200},
		{"If-Match false despite If-Unmodified-Since true", []string{`If-Match: "other"`, "If-Unmodified-Since: " + dateAfter}, 412},
		{"If-Match false beats If-None-Match", []string{`If-Match: "other"`, "If-None-Match: E"}, 412},
		{"If-Match true then If-None-Match match", []string{"If-Match: E", "If-None-Match: E"}, 304},
		{"If-Match star then If-None-Match star", []string{"If-Match: *", "If-None-Match: *"}, 304},

		{"If-Unmodified-Since true", []string{"If-Unmodified-Since: " + dateAfter}, 200},
		{"If-Unmodified-Since equal", []string{"If-Unmodified-Since: " + dateEqual}, 200},
		{"If-Unmodified-Since false", []string{"If-Unmodified-Since: " + dateBefore}, 412},
		{"If-Unmodified-Since invalid is ignored", []string{"If-Unmodified-Since: " + dateInvalid}, 200},
		{"If-Unmodified-Since false beats If-None-Match match", []string{"If-Unmodified-Since: " + dateBefore, "If-None-Match: E"}, 412},
		{"If-Unmodified-Since true then If-None-Match match", []string{"If-Unmodified-Since: " + dateAfter, "If-None-Match: E"}, 304},

		{"If-None-Match match", []string{"If-None-Match: E"}, 304},
		{"If-None-Match no match", []string{`If-None-Match: "other"`}, 200},
		{"If-None-Match star", []string{"If-None-Match: *"}, 304},
		{"If-None-Match weak comparison", []string{"If-None-Match: W/E"}, 304},
		{"If-None-Match list with a match", []string{`If-None-Match: "a", W/"b", E`}, 304},
		{"If-None-Match over several lines", []string{`If-None-Match: "a"`, "If-None-Match: E"}, 304},
		{"If-None-Match match ignores If-Modified-Since modified", []string{"If-None-Match: E", "If-Modified-Since: " + dateBefore}, 304},
		{"If-None-Match no match ignores If-Modified-Since unmodified", []string{`If-None-Match: "other"`, "If-Modified-Since: " + dateAfter}, 200},

		{"If-Modified-Since unmodified", []string{"If-Modified-Since: " + dateAfter}, 304},
		{"If-Modified-Since equal", []string{"If-Modified-Since: " + dateEqual}, 304},
		{"If-Modified-Since modified", []string{"If-Modified-Since: " + dateBefore}, 200},
		{"If-Modified-Since invalid is ignored", []string{"If-Modified-Since: " + dateInvalid}, 200},

		{"all four, every one true", []string{"If-Match: E", "If-Unmodified-Since: " + dateAfter, `If-None-Match: "other"`, "If-Modified-Since: " + dateBefore}, 200},
		{"all four, If-None-Match decides", []string{"If-Match: E", "If-Unmodified-Since: " + dateBefore, "If-None-Match: E", "If-Modified-Since: " + dateBefore}, 304},
	}
	for _, up := range []struct {
		name string
		h    http.Handler
	}{{"plain upstream", plainUpstream()}, {"dated upstream", datedUpstream()}} {
		g := startReadGateway(t, DefaultConfig(), up.h)
		etag := hashing.XXH3.Sum(readBody)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, c := range cases {
				t.Run(up.name+"/"+method+"/"+c.name, func(t *testing.T) {
					lines := expandE(c.header, etag)
					// net/http reads only the first line of a field.
					if got := oracleStatus(method, headerOf(lines), etag); got != c.want && !repeatsField(lines) {
						t.Fatalf("the table disagrees with net/http: want %d, net/http says %d", c.want, got)
					}
					res, body := g.do(t, method, "/r", lines...)
					checkReadAnswer(t, method, res, body, c.want, etag)
				})
			}
		}
	}
}

// checkReadAnswer checks status, body and ETag of a read's answer.
func checkReadAnswer(t *testing.T, method string, res *http.Response, body []byte, want int, etag string) {
	t.Helper()
	if res.StatusCode != want {
		t.Fatalf("status %d, want %d (body %q)", res.StatusCode, want, body)
	}
	switch want {
	case 200:
		if got := res.Header.Get("Etag"); got != etag {
			t.Errorf("ETag %q, want %q", got, etag)
		}
		if method == http.MethodGet && !bytes.Equal(body, readBody) {
			t.Errorf("body %q, want %q", body, readBody)
		}
	case 304:
		if got := res.Header.Get("Etag"); got != etag {
			t.Errorf("304 ETag %q, want %q", got, etag)
		}
		if len(body) != 0 {
			t.Errorf("304 with body %q", body)
		}
	case 412:
		if got := res.Header.Get("Etag"); got != etag {
			t.Errorf("412 ETag %q, want the current %q", got, etag)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("412 Content-Type %q", ct)
		}
		if method == http.MethodHead && len(body) != 0 {
			t.Errorf("HEAD 412 with body %q", body)
		}
	}
	if method == http.MethodHead && len(body) != 0 {
		t.Errorf("HEAD answered with body %q", body)
	}
}

// TestReadPreconditionCombinations crosses every value of the four
// precondition fields for GET and HEAD and checks the gateway against
// net/http's own implementation of RFC 9110 §13.2.2, in front of an upstream
// that ignores conditionals and one that answers date conditionals itself.
func TestReadPreconditionCombinations(t *testing.T) {
	ifMatch := []string{"", "E", `"other"`, "*", "W/E"}
	ifNoneMatch := []string{"", "E", `"other"`, "*", "W/E"}
	dates := []string{"", dateBefore, dateEqual, dateAfter, dateInvalid}
	etag := hashing.XXH3.Sum(readBody)
	for _, up := range []struct {
		name string
		h    http.Handler
	}{{"plain upstream", plainUpstream()}, {"dated upstream", datedUpstream()}} {
		g := startReadGateway(t, DefaultConfig(), up.h)
		seen := map[int]int{}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, im := range ifMatch {
				for _, ius := range dates {
					for _, inm := range ifNoneMatch {
						for _, ims := range dates {
							var lines []string
							for _, f := range [...]struct{ name, v string }{
								{"If-Match", im}, {"If-Unmodified-Since", ius}, {"If-None-Match", inm}, {"If-Modified-Since", ims},
							} {
								if f.v != "" {
									lines = append(lines, f.name+": "+f.v)
								}
							}
							lines = expandE(lines, etag)
							want := oracleStatus(method, headerOf(lines), etag)
							seen[want]++
							res, body := g.do(t, method, "/r", lines...)
							if res.StatusCode != want {
								t.Errorf("%s: %s %v: status %d, want %d", up.name, method, lines, res.StatusCode, want)
								continue
							}
							if want == 304 && (len(body) != 0 || res.Header.Get("Etag") != etag) {
								t.Errorf("%s: %s %v: 304 with ETag %q and body %q", up.name, method, lines, res.Header.Get("Etag"), body)
							}
							if want == 200 && res.Header.Get("Etag") != etag {
								t.Errorf("%s: %s %v: 200 with ETag %q", up.name, method, lines, res.Header.Get("Etag"))
							}
						}
					}
				}
			}
		}
		if seen[200] == 0 || seen[304] == 0 || seen[412] == 0 {
			t.Fatalf("the combinations do not cover every outcome: %v", seen)
		}
	}
}

// TestReadMalformedTagList refuses an unparseable list with a problem
// naming the field, before anything goes upstream.
func TestReadMalformedTagList(t *testing.T) {
	var upstreamHits atomic.Int32
	g := startReadGateway(t, DefaultConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		_, _ = w.Write(readBody)
	}))
	for _, field := range []string{"If-Match", "If-None-Match"} {
		res, body := g.do(t, http.MethodGet, "/r", field+": abc")
		if res.StatusCode != 400 {
			t.Fatalf("%s: abc: status %d, want 400", field, res.StatusCode)
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("problem body %q: %v", body, err)
		}
		if p["header"] != field || !strings.Contains(fmt.Sprint(p["detail"]), field) {
			t.Errorf("problem does not name %s: %s", field, body)
		}
	}
	if n := upstreamHits.Load(); n != 0 {
		t.Errorf("malformed requests reached the upstream %d times", n)
	}
}

// notModifiedUpstream serves readBody with every header a 304 must keep or
// drop.
func notModifiedUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Language", "en")
		h.Set("Last-Modified", readLastModified.Format(http.TimeFormat))
		h.Set("Cache-Control", "private, max-age=60")
		h.Set("Content-Location", "/r.json")
		h.Set("Date", "Fri, 01 Mar 2024 12:30:00 GMT")
		h.Set("Expires", "Fri, 01 Mar 2024 13:30:00 GMT")
		h.Set("Vary", "Accept-Language")
		_, _ = w.Write(readBody)
	})
}

// checkNotModifiedHead checks a 304's fields against its 200's.
func checkNotModifiedHead(t *testing.T, status string, head http.Header, rest []byte, ok http.Header) {
	t.Helper()
	if !strings.Contains(status, " 304 ") {
		t.Fatalf("status line %q, want 304", status)
	}
	if len(rest) != 0 {
		t.Errorf("304 followed by %d bytes: %q", len(rest), rest)
	}
	for _, k := range []string{"Etag", "Cache-Control", "Content-Location", "Date", "Expires", "Vary"} {
		if ok.Get(k) == "" {
			t.Fatalf("the 200 has no %s to compare with", k)
		}
		if got, want := head.Values(k), ok.Values(k); !slices.Equal(got, want) {
			t.Errorf("304 %s = %q, want the 200's %q", k, got, want)
		}
	}
	for _, k := range []string{"Content-Type", "Content-Length", "Last-Modified", "Content-Language", "Transfer-Encoding"} {
		if v, present := head[k]; present {
			t.Errorf("304 carries %s: %q", k, v)
		}
	}
}

func TestReadNotModifiedHeaders(t *testing.T) {
	g := startReadGateway(t, DefaultConfig(), notModifiedUpstream())
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		status, ok, body := testutil.RawExchange(t, g.url, method, "/r")
		if !strings.Contains(status, " 200 ") {
			t.Fatalf("%s: status line %q", method, status)
		}
		if method == http.MethodGet && !bytes.Equal(body, readBody) {
			t.Fatalf("GET body %q", body)
		}
		etag := ok.Get("Etag")
		for _, cond := range []string{"If-None-Match: " + etag, "If-Modified-Since: " + dateAfter, "If-None-Match: *"} {
			t.Run(method+"/"+cond, func(t *testing.T) {
				status, head, rest := testutil.RawExchange(t, g.url, method, "/r", cond)
				checkNotModifiedHead(t, status, head, rest, ok)
			})
		}
	}
}

// headerWithoutDate is h minus the fields that may differ between two
// answers a second apart.
func headerWithoutDate(h http.Header) http.Header {
	c := h.Clone()
	delete(c, "Date")
	return c
}

func TestReadHeadHeadersEqualGet(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3<<20)
	mux := http.NewServeMux()
	mux.Handle("/small", notModifiedUpstream())
	mux.HandleFunc("/strong", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"upstream-v1"`)
		_, _ = w.Write(readBody)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/big-declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		_, _ = w.Write(big)
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < len(big); i += 64 << 10 {
			_, _ = w.Write(big[i : i+64<<10])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such item", http.StatusNotFound)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
	})
	cfg := DefaultConfig()
	cfg.MaxBody = 1 << 20
	g := startReadGateway(t, cfg, mux)
	for _, path := range []string{"/small", "/strong", "/empty", "/big-declared", "/big-chunked", "/missing", "/events"} {
		t.Run(path, func(t *testing.T) {
			get, getBody := g.do(t, http.MethodGet, path)
			head, headBody := g.do(t, http.MethodHead, path)
			if get.StatusCode != head.StatusCode {
				t.Fatalf("GET %d, HEAD %d", get.StatusCode, head.StatusCode)
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD body %q", headBody)
			}
			if got, want := headerWithoutDate(head.Header), headerWithoutDate(get.Header); !equalHeader(got, want) {
				t.Errorf("HEAD header\n%v\nGET header\n%v", got, want)
			}
			if get.StatusCode == 200 && get.ContentLength >= 0 && get.ContentLength != int64(len(getBody)) {
				t.Errorf("GET Content-Length %d for %d bytes", get.ContentLength, len(getBody))
			}
			if head.ContentLength != get.ContentLength {
				t.Errorf("HEAD Content-Length %d, GET %d", head.ContentLength, get.ContentLength)
			}
		})
	}
	// The buffered cases carry the ETag on both.
	for _, path := range []string{"/small", "/empty"} {
		get, body := g.do(t, http.MethodGet, path)
		if want := hashing.XXH3.Sum(body); get.Header.Get("Etag") != want {
			t.Errorf("%s: ETag %q, want %q", path, get.Header.Get("Etag"), want)
		}
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestReadUpstreamETag(t *testing.T) {
	hashed := hashing.XXH3.Sum(readBody)
	cases := []struct {
		name     string
		upstream []string // ETag lines the upstream sends
		keep     bool
		want     string
	}{
		{"none", nil, true, hashed},
		{"strong kept", []string{`"v1"`}, true, `"v1"`},
		{"weak replaced", []string{`W/"v1"`}, true, hashed},
		{"strong replaced with replace", []string{`"v1"`}, false, hashed},
		{"weak replaced with replace", []string{`W/"v1"`}, false, hashed},
		{"malformed replaced", []string{`v1`}, true, hashed},
		{"two lines replaced", []string{`"v1"`, `"v2"`}, true, hashed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.KeepUpstreamETag = c.keep
			g := startReadGateway(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Etag"] = c.upstream
				_, _ = w.Write(readBody)
			}))
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				res, _ := g.do(t, method, "/r")
				if got := res.Header.Values("Etag"); len(got) != 1 || got[0] != c.want {
					t.Errorf("%s: ETag %q, want %q", method, got, c.want)
				}
				res, body := g.do(t, method, "/r", "If-None-Match: "+c.want)
				if res.StatusCode != 304 || res.Header.Get("Etag") != c.want {
					t.Errorf("%s If-None-Match %s: %d ETag %q %q", method, c.want, res.StatusCode, res.Header.Get("Etag"), body)
				}
				res, _ = g.do(t, method, "/r", "If-Match: "+c.want)
				if res.StatusCode != 200 {
					t.Errorf("%s If-Match %s: %d", method, c.want, res.StatusCode)
				}
				if c.want != `"v1"` {
					// The upstream's own tag is no validator of this gateway.
					res, _ = g.do(t, method, "/r", `If-None-Match: "v1"`, `If-Match: "v1"`)
					if res.StatusCode != 412 {
						t.Errorf("%s with the replaced upstream tag: %d, want 412", method, res.StatusCode)
					}
				}
			}
		})
	}
}

// streamUpstream sends size bytes of a repeated 64 KiB pattern without a
// Content-Length, or with one when declared.
func streamUpstream(size int64, declared bool) (http.Handler, []byte) {
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>8)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if declared {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		for sent := int64(0); sent < size; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(int64(len(chunk)), size-sent)]); err != nil {
				return
			}
		}
	}), chunk
}

// TestReadOverMaxBodyIsNotHeld streams a 256 MiB body through a gateway
// with a 1 MiB max_body and checks that it arrives whole, without an ETag,
// and that the process allocated and held only a small fraction of it.
func TestReadOverMaxBodyIsNotHeld(t *testing.T) {
	const size = 256 << 20
	for _, declared := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length declared %v", declared), func(t *testing.T) {
			up, chunk := streamUpstream(size, declared)
			cfg := DefaultConfig()
			cfg.MaxBody = 1 << 20
			g := startReadGateway(t, cfg, up)

			want := xxh3.New()
			for sent := 0; sent < size; sent += len(chunk) {
				_, _ = want.Write(chunk)
			}

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var peak atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})

			res, err := g.client.Get(g.url + "/big")
			if err != nil {
				t.Fatal(err)
			}
			got := xxh3.New()
			n, err := io.Copy(got, res.Body)
			res.Body.Close()
			close(stop)
			wg.Wait()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)

			if err != nil || n != size {
				t.Fatalf("received %d bytes of %d: %v", n, size, err)
			}
			if got.Sum128() != want.Sum128() {
				t.Fatal("the body arrived altered")
			}
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			if v, ok := res.Header["Etag"]; ok {
				t.Errorf("a body over max_body got ETag %q", v)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			held := int64(peak.Load()) - int64(before.HeapInuse)
			t.Logf("streamed %d MiB: allocated %.1f MiB, peak heap growth %.1f MiB", size>>20, float64(allocated)/(1<<20), float64(held)/(1<<20))
			if allocated > 32<<20 {
				t.Errorf("allocated %d MiB while streaming %d MiB: the body is being copied", allocated>>20, size>>20)
			}
			if held > 16<<20 {
				t.Errorf("heap grew by %d MiB while streaming %d MiB: the body is being held", held>>20, size>>20)
			}
		})
	}
}

// TestReadOverMaxBodyAtUpstreamPace checks that once a body outgrows
// max_body, the client receives what the upstream sent while the upstream
// is still sending.
func TestReadOverMaxBodyAtUpstreamPace(t *testing.T) {
	first := bytes.Repeat([]byte("a"), 3<<19) // 1.5 MiB, over max_body
	received := make(chan struct{})
	upstreamWaited := make(chan bool, 1)
	cfg := DefaultConfig()
	cfg.MaxBody = 1 << 20
	g := startReadGateway(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(first)
		w.(http.Flusher).Flush()
		select {
		case <-received:
			upstreamWaited <- true
		case <-time.After(20 * time.Second):
			upstreamWaited <- false
		}
		_, _ = io.WriteString(w, "the end")
	}))
	res, err := g.client.Get(g.url + "/r")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, ok := res.Header["Etag"]; ok {
		t.Errorf("streamed body got ETag %q", res.Header.Get("Etag"))
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	close(received)
	rest, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !<-upstreamWaited {
		t.Fatal("the client got the first MiB only after the upstream finished")
	}
	if !bytes.HasSuffix(rest, []byte("the end")) || len(buf)+len(rest) != len(first)+len("the end") {
		t.Errorf("body arrived incomplete: %d bytes", len(buf)+len(rest))
	}
}

// readEvent reads one server-sent event, up to its blank line.
func readEvent(r *bufio.Reader) (string, error) {
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev.String(), err
		}
		if line == "\n" {
			return ev.String(), nil
		}
		ev.WriteString(line)
	}
}

func TestReadEventStreamEventByEvent(t *testing.T) {
	got1 := make(chan struct{})
	upstreamWaited := make(chan bool, 1)
	g := startReadGateway(t, DefaultConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, "id: 1\ndata: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-got1:
			upstreamWaited <- true
		case <-time.After(20 * time.Second):
			upstreamWaited <- false
		}
		_, _ = io.WriteString(w, "id: 2\ndata: two\n\n")
	}))
	res, err := g.client.Get(g.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, ok := res.Header["Etag"]; ok {
		t.Errorf("event stream got ETag %q", res.Header.Get("Etag"))
	}
	br := bufio.NewReader(res.Body)
	ev, err := readEvent(br)
	if err != nil || ev != "id: 1\ndata: one\n" {
		t.Fatalf("first event %q: %v", ev, err)
	}
	close(got1)
	ev, err = readEvent(br)
	if err != nil || ev != "id: 2\ndata: two\n" {
		t.Fatalf("second event %q: %v", ev, err)
	}
	if !<-upstreamWaited {
		t.Fatal("the first event arrived only after the upstream sent the second")
	}
}

func TestReadNon200Untouched(t *testing.T) {
	cases := []struct {
		status int
		header map[string]string
		body   string
	}{
		{201, nil, `{"created":true}`},
		{203, nil, "non-authoritative"},
		{204, nil, ""},
		{206, map[string]string{"Content-Range": "bytes 0-3/10"}, "0123"},
		{301, map[string]string{"Location": "/elsewhere"}, "moved"},
		{404, nil, "no such item"},
		{410, nil, "gone"},
		{500, nil, "upstream broke"},
		{503, map[string]string{"Retry-After": "5"}, "busy"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			g := startReadGateway(t, DefaultConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			}))
			// Preconditions that would turn a 200 into a 304 or 412 do not
			// apply to a response that is not the selected representation.
			for _, cond := range []string{"", "If-None-Match: *", `If-Match: "x"`, "If-Modified-Since: " + dateAfter} {
				var lines []string
				if cond != "" {
					lines = append(lines, cond)
				}
				res, body := g.do(t, http.MethodGet, "/r", lines...)
				if res.StatusCode != c.status || string(body) != c.body {
					t.Errorf("%q: %d %q, want %d %q", cond, res.StatusCode, body, c.status, c.body)
				}
				if v, ok := res.Header["Etag"]; ok {
					t.Errorf("%q: ETag %q on a %d", cond, v, c.status)
				}
				for k, v := range c.header {
					if res.Header.Get(k) != v {
						t.Errorf("%q: %s = %q, want %q", cond, k, res.Header.Get(k), v)
					}
				}
			}
		})
	}
}

func TestReadExposesETagToCORS(t *testing.T) {
	cases := []struct {
		name   string
		header map[string]string
		want   []string // Access-Control-Expose-Headers values, nil for none
	}{
		{"no CORS", nil, nil},
		{"CORS", map[string]string{"Access-Control-Allow-Origin": "*"}, []string{"ETag"}},
		{"CORS with other exposed", map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Expose-Headers": "X-Total"}, []string{"X-Total", "ETag"}},
		{"CORS already exposing", map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "X-Total, etag"}, []string{"X-Total, etag"}},
		{"CORS exposing all", map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "*"}, []string{"*"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startReadGateway(t, DefaultConfig(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				_, _ = w.Write(readBody)
			}))
			res, _ := g.do(t, http.MethodGet, "/r")
			if got := res.Header.Values("Access-Control-Expose-Headers"); !slices.Equal(got, c.want) {
				t.Errorf("200: Access-Control-Expose-Headers %q, want %q", got, c.want)
			}
			res, _ = g.do(t, http.MethodGet, "/r", "If-None-Match: "+res.Header.Get("Etag"))
			if res.StatusCode != 304 {
				t.Fatalf("revalidation: %d", res.StatusCode)
			}
			if got := res.Header.Values("Access-Control-Expose-Headers"); !slices.Equal(got, c.want) {
				t.Errorf("304: Access-Control-Expose-Headers %q, want %q", got, c.want)
			}
		})
	}
}

// userUpstream serves a different representation to every Authorization
// (or X-Tenant) value, and records the order of what reaches it.
type userUpstream struct {
	mu      sync.Mutex
	version int
	log     []string // "GET" or "PUT <who>"
}

func (u *userUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	who := r.Header.Get("Authorization") + r.Header.Get("X-Tenant")
	u.mu.Lock()
	defer u.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		u.log = append(u.log, "GET")
		if r.Header.Get("X-Tenant") != "" {
			w.Header().Set("Vary", "X-Tenant")
		}
		fmt.Fprintf(w, "data of %s, version %d\n", who, u.version)
	case http.MethodPut:
		u.log = append(u.log, "PUT "+who)
		u.version++
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (u *userUpstream) events() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.log)
}

// TestReadCacheKeyedByAuthorization uses verify cache: a write's
// precondition is checked against the cached ETag of the writer's own
// representation, never one another user read.
func TestReadCacheKeyedByAuthorization(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Verify = VerifyCache
	cfg.ETagAfterWrite = false
	up := &userUpstream{}
	g := startReadGateway(t, cfg, up)

	alice, _ := g.do(t, http.MethodGet, "/doc", "Authorization: Bearer alice")
	g.m.cache.c.Wait()
	bob, _ := g.do(t, http.MethodGet, "/doc", "Authorization: Bearer bob")
	g.m.cache.c.Wait()
	tagA, tagB := alice.Header.Get("Etag"), bob.Header.Get("Etag")
	if tagA == "" || tagB == "" || tagA == tagB {
		t.Fatalf("alice's ETag %q, bob's %q: want two different tags", tagA, tagB)
	}

	// Bob cannot write with Alice's tag: his own representation differs.
	res, _ := g.do(t, http.MethodPut, "/doc", "Authorization: Bearer bob", "If-Match: "+tagA)
	if res.StatusCode != 412 || res.Header.Get("Etag") != tagB {
		t.Fatalf("bob with alice's tag: %d ETag %q, want 412 with %q", res.StatusCode, res.Header.Get("Etag"), tagB)
	}
	// Alice can, and her check is answered by her own cache entry, not by
	// Bob's later one nor by the upstream.
	res, _ = g.do(t, http.MethodPut, "/doc", "Authorization: Bearer alice", "If-Match: "+tagA)
	if res.StatusCode != 204 {
		t.Fatalf("alice with her tag: %d, want 204", res.StatusCode)
	}
	if got, want := up.events(), []string{"GET", "GET", "PUT Bearer alice"}; !slices.Equal(got, want) {
		t.Fatalf("upstream saw %q, want %q: the checks did not come from each user's cache entry", got, want)
	}

	// The same through the engine's cache directly.
	rk := xxh3.HashString128("some resource")
	ha, hb := http.Header{"Authorization": {"Bearer alice"}}, http.Header{"Authorization": {"Bearer bob"}}
	va, vb := variantOf(rk, g.m.vary, ha), variantOf(rk, g.m.vary, hb)
	if va == vb {
		t.Fatal("two Authorization values give one variant key")
	}
	g.m.cache.fill(rk, va, g.m.cache.generation(rk), `"a"`, time.Time{}, ha, http.Header{})
	g.m.cache.c.Wait()
	if _, ok := g.m.cache.get(vb, g.m.cache.generation(rk), hb); ok {
		t.Fatal("bob's lookup found alice's entry")
	}
	if e, ok := g.m.cache.get(va, g.m.cache.generation(rk), ha); !ok || e.etag != `"a"` {
		t.Fatalf("alice's lookup: %v %v", e, ok)
	}
}

// TestReadCacheKeyedByUpstreamVary keys the cache by the headers the
// upstream lists in Vary even when none are configured.
func TestReadCacheKeyedByUpstreamVary(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Verify = VerifyCache
	cfg.ETagAfterWrite = false
	cfg.Vary = nil
	up := &userUpstream{}
	g := startReadGateway(t, cfg, up)

	a, _ := g.do(t, http.MethodGet, "/doc", "X-Tenant: a")
	g.m.cache.c.Wait()
	b, _ := g.do(t, http.MethodGet, "/doc", "X-Tenant: b")
	g.m.cache.c.Wait()
	tagA, tagB := a.Header.Get("Etag"), b.Header.Get("Etag")
	if tagA == "" || tagA == tagB {
		t.Fatalf("tenant ETags %q and %q", tagA, tagB)
	}
	// Tenant a's current tag is tagA; tenant b's read must not answer for it.
	res, _ := g.do(t, http.MethodPut, "/doc", "X-Tenant: a", "If-Match: "+tagA)
	if res.StatusCode != 204 {
		t.Fatalf("tenant a with its own tag: %d, want 204", res.StatusCode)
	}
	if got := up.events(); !slices.Contains(got, "PUT a") {
		t.Fatalf("upstream saw %q", got)
	}
}

// TestReadSlowFillDoesNotOutliveWrite starts a read, lets a write complete
// while the read's upstream response is still on its way, and checks that
// the stale ETag the read computed is not what the next write is checked
// against.
func TestReadSlowFillDoesNotOutliveWrite(t *testing.T) {
	var mu sync.Mutex
	doc := "version 1"
	reading := make(chan struct{})
	release := make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	cfg := DefaultConfig()
	cfg.Verify = VerifyCache
	cfg.ETagAfterWrite = false
	g := startReadGateway(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			mu.Lock()
			snapshot := doc
			mu.Unlock()
			if slow.CompareAndSwap(true, false) {
				close(reading)
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
			}
			_, _ = io.WriteString(w, snapshot)
		case http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			doc = string(b)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	old := hashing.XXH3.Sum([]byte("version 1"))

	done := make(chan *http.Response, 1)
	go func() {
		res, err := g.client.Get(g.url + "/doc")
		if err != nil {
			t.Error(err)
		} else {
			res.Body.Close()
		}
		done <- res
	}()
	<-reading
	req, _ := http.NewRequest(http.MethodPut, g.url+"/doc", strings.NewReader("version 2"))
	req.Header.Set("If-Match", "*")
	res, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 {
		t.Fatalf("PUT: %d", res.StatusCode)
	}
	close(release)
	if slowRes := <-done; slowRes == nil || slowRes.Header.Get("Etag") != old {
		t.Fatalf("the slow read did not answer with the old ETag %s", old)
	}
	g.m.cache.c.Wait()

	req, _ = http.NewRequest(http.MethodPut, g.url+"/doc", strings.NewReader("version 3"))
	req.Header.Set("If-Match", old)
	res, err = g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 412 {
		t.Fatalf("PUT with the tag of the overwritten version: %d, want 412", res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if doc != "version 2" {
		t.Fatalf("the upstream holds %q: an update was lost", doc)
	}
}

// TestReadConcurrent runs many reads of different sizes at once, so that
// pooled buffers and hashers shared between them would show.
func TestReadConcurrent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBody = 256 << 10
	g := startReadGateway(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, _ = w.Write(bytes.Repeat([]byte{byte('a' + n%26)}, n))
	}))
	sizes := []int{0, 1, 100, 4 << 10, 64 << 10, 256 << 10, 256<<10 + 1, 1 << 20}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			n := sizes[i%len(sizes)]
			method := []string{http.MethodGet, http.MethodHead}[i/len(sizes)%2]
			res, body := g.do(t, method, fmt.Sprintf("/r?n=%d", n))
			want := bytes.Repeat([]byte{byte('a' + n%26)}, n)
			if method == http.MethodGet && !bytes.Equal(body, want) {
				t.Errorf("%s n=%d: body of %d bytes differs", method, n, len(body))
			}
			tag := res.Header.Get("Etag")
			switch {
			case int64(n) > cfg.MaxBody && tag != "":
				t.Errorf("%s n=%d: ETag %q over max_body", method, n, tag)
			case int64(n) <= cfg.MaxBody && tag != hashing.XXH3.Sum(want):
				t.Errorf("%s n=%d: ETag %q, want %q", method, n, tag, hashing.XXH3.Sum(want))
			}
		})
	}
	wg.Wait()
}
