package caddymodule

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/xxh3"

	"github.com/etaggate/etaggate/hashing"
	"github.com/etaggate/etaggate/internal/testutil"
)

// These tests run real Caddy in-process, with the etag directive in front of
// reverse_proxy to a real upstream on 127.0.0.1. Caddy runs one
// configuration per process, so none of them is parallel.

var readModified = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// readDoc is a JSON document long enough for encode to compress it.
var readDoc = []byte(`{"id":1,"items":[` + strings.Repeat(`{"name":"widget","qty":3},`, 60) + `{"name":"last","qty":1}]}`)

// readUpstream is a legacy API on 127.0.0.1: GET serves its document
// through http.ServeContent without an ETag (so it answers date
// conditionals itself), PUT replaces it, and it records what reached it.
type readUpstream struct {
	mu   sync.Mutex
	doc  []byte
	seen []string // "METHOD path Authorization"
	srv  *httptest.Server
	host string
}

func startReadUpstream(t *testing.T) *readUpstream {
	t.Helper()
	u := &readUpstream{doc: readDoc}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	pu, err := url.Parse(u.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.host = pu.Host
	return u
}

func (u *readUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")))
	doc := u.doc
	u.mu.Unlock()
	h := w.Header()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "private, max-age=0")
		h.Set("Content-Location", r.URL.Path+".json")
		h.Set("Expires", "Fri, 01 Mar 2024 13:00:00 GMT")
		h.Set("Vary", "Accept-Language")
		if who := r.Header.Get("Authorization"); who != "" {
			doc = append(slices.Clone(doc), who...)
		}
		http.ServeContent(w, r, "", readModified, bytes.NewReader(doc))
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.doc = b
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// requests returns what reached the upstream with the given method.
func (u *readUpstream) requests(method string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, s := range u.seen {
		if strings.HasPrefix(s, method+" ") {
			out = append(out, s)
		}
	}
	return out
}

// startReadCaddy loads one site on 127.0.0.1 whose route is the given
// directives, and returns its base URL.
func startReadCaddy(t *testing.T, route string) string {
	t.Helper()
	return testutil.Start(t, ":{port} {\n\tbind 127.0.0.1\n"+route+"\n}\n")
}

// readDo sends a request with header lines "Name: value" and reads the
// answer.
func readDo(t *testing.T, method, u string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
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
	res, err := testutil.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return res, b
}

// readRaw sends a raw HTTP/1.1 request and returns the status line, the
// header and every byte that followed it.
func readRaw(t *testing.T, base, method, path string, header ...string) (string, http.Header, []byte) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	head, rest, ok := bytes.Cut(all, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of header in %q", all)
	}
	lines := strings.Split(string(head), "\r\n")
	h := http.Header{}
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ":")
		h.Add(name, strings.TrimSpace(value))
	}
	return lines[0], h, rest
}

func TestCaddyETagRead(t *testing.T) {
	up := startReadUpstream(t)
	base := startReadCaddy(t, "\tetag\n\treverse_proxy "+up.host)
	etag := hashing.XXH3.Sum(readDoc)

	res, body := readDo(t, http.MethodGet, base+"/doc", nil)
	if res.StatusCode != 200 || !bytes.Equal(body, readDoc) {
		t.Fatalf("GET: %d %q", res.StatusCode, body)
	}
	if got := res.Header.Get("Etag"); got != etag {
		t.Fatalf("ETag %q, want the hash of the body %q", got, etag)
	}

	t.Run("HEAD headers equal GET headers", func(t *testing.T) {
		get, _ := readDo(t, http.MethodGet, base+"/doc", nil)
		head, hb := readDo(t, http.MethodHead, base+"/doc", nil)
		if len(hb) != 0 || head.StatusCode != 200 {
			t.Fatalf("HEAD: %d with body %q", head.StatusCode, hb)
		}
		g, h := get.Header.Clone(), head.Header.Clone()
		delete(g, "Date")
		delete(h, "Date")
		if fmt.Sprint(g) != fmt.Sprint(h) {
			t.Errorf("HEAD header\n%v\nGET header\n%v", h, g)
		}
		if head.ContentLength != int64(len(readDoc)) || h.Get("Etag") != etag {
			t.Errorf("HEAD Content-Length %d ETag %q", head.ContentLength, h.Get("Etag"))
		}
	})

	t.Run("304 header set", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			_, ok, _ := readRaw(t, base, method, "/doc")
			for _, cond := range []string{"If-None-Match: " + etag, "If-Modified-Since: Fri, 01 Mar 2024 12:00:00 GMT"} {
				status, h, rest := readRaw(t, base, method, "/doc", cond)
				if !strings.Contains(status, " 304 ") {
					t.Fatalf("%s %s: %q", method, cond, status)
				}
				if len(rest) != 0 {
					t.Errorf("%s %s: 304 followed by %q", method, cond, rest)
				}
				for _, k := range []string{"Etag", "Cache-Control", "Content-Location", "Expires", "Vary"} {
					if got, want := h.Values(k), ok.Values(k); len(want) == 0 || !slices.Equal(got, want) {
						t.Errorf("%s %s: 304 %s %q, 200 had %q", method, cond, k, got, want)
					}
				}
				if h.Get("Date") == "" {
					t.Errorf("%s %s: 304 without Date", method, cond)
				}
				for _, k := range []string{"Content-Type", "Content-Length", "Last-Modified"} {
					if v, present := h[k]; present {
						t.Errorf("%s %s: 304 carries %s %q", method, cond, k, v)
					}
				}
			}
		}
	})

	t.Run("preconditions", func(t *testing.T) {
		before := readModified.Add(-time.Hour).Format(http.TimeFormat)
		after := readModified.Add(time.Hour).Format(http.TimeFormat)
		cases := []struct {
			header []string
			want   int
		}{
			{[]string{"If-Match: " + etag}, 200},
			{[]string{`If-Match: "stale"`}, 412},
			{[]string{"If-Match: *"}, 200},
			{[]string{"If-Match: W/" + etag}, 412},
			{[]string{"If-Match: " + etag, "If-Unmodified-Since: " + before}, 200},
			{[]string{"If-Unmodified-Since: " + before}, 412},
			{[]string{"If-Unmodified-Since: " + after}, 200},
			{[]string{"If-Unmodified-Since: not a date"}, 200},
			{[]string{`If-Match: "stale"`, "If-None-Match: " + etag}, 412},
			{[]string{"If-None-Match: " + etag}, 304},
			{[]string{"If-None-Match: W/" + etag}, 304},
			{[]string{"If-None-Match: *"}, 304},
			{[]string{`If-None-Match: "stale"`}, 200},
			{[]string{`If-None-Match: "stale"`, "If-Modified-Since: " + after}, 200},
			{[]string{"If-None-Match: " + etag, "If-Modified-Since: " + before}, 304},
			{[]string{"If-Modified-Since: " + after}, 304},
			{[]string{"If-Modified-Since: " + before}, 200},
			{[]string{"If-Match: " + etag, "If-Unmodified-Since: " + before, "If-None-Match: " + etag}, 304},
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, c := range cases {
				res, body := readDo(t, method, base+"/doc", nil, c.header...)
				if res.StatusCode != c.want {
					t.Errorf("%s %q: %d, want %d", method, c.header, res.StatusCode, c.want)
					continue
				}
				if c.want != 412 && res.Header.Get("Etag") != etag {
					t.Errorf("%s %q: ETag %q", method, c.header, res.Header.Get("Etag"))
				}
				if (c.want == 304 || method == http.MethodHead) && len(body) != 0 {
					t.Errorf("%s %q: body %q", method, c.header, body)
				}
			}
		}
	})
}

func TestCaddyETagUpstreamETagOption(t *testing.T) {
	hashed := hashing.XXH3.Sum(readDoc)
	cases := []struct {
		option, upstream, want string
	}{
		{"", `"legacy-v1"`, `"legacy-v1"`},
		{"upstream_etag keep", `"legacy-v1"`, `"legacy-v1"`},
		{"upstream_etag keep", `W/"legacy-v1"`, hashed},
		{"upstream_etag replace", `"legacy-v1"`, hashed},
	}
	for _, c := range cases {
		t.Run(c.option+" "+c.upstream, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Etag", c.upstream)
				_, _ = w.Write(readDoc)
			}))
			defer up.Close()
			directive := "\tetag\n"
			if c.option != "" {
				directive = "\tetag {\n\t\t" + c.option + "\n\t}\n"
			}
			base := startReadCaddy(t, directive+"\treverse_proxy "+strings.TrimPrefix(up.URL, "http://"))
			res, _ := readDo(t, http.MethodGet, base+"/doc", nil)
			if got := res.Header.Get("Etag"); got != c.want {
				t.Errorf("ETag %q, want %q", got, c.want)
			}
			res, _ = readDo(t, http.MethodGet, base+"/doc", nil, "If-None-Match: "+c.want)
			if res.StatusCode != 304 {
				t.Errorf("revalidation %d", res.StatusCode)
			}
		})
	}
}

// encodedTag is the ETag encode gives a response compressed with enc.
func encodedTag(tag, enc string) string {
	return strings.TrimSuffix(tag, `"`) + "-" + enc + `"`
}

func decode(t *testing.T, enc string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", enc, err)
	}
	return b
}

// TestCaddyETagBehindEncode puts Caddy's encode in front of etag: the
// client sees a suffixed ETag and may send it back in If-None-Match and in
// If-Match.
func TestCaddyETagBehindEncode(t *testing.T) {
	up := startReadUpstream(t)
	base := startReadCaddy(t, "\tencode gzip zstd\n\tetag\n\treverse_proxy "+up.host)
	for _, enc := range []string{"gzip", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			doc := []byte(strings.Replace(string(readDoc), `"id":1`, `"id":"`+enc+`"`, 1))
			res, _ := readDo(t, http.MethodPut, base+"/doc", bytes.NewReader(doc), `If-Match: *`)
			if res.StatusCode != 204 {
				t.Fatalf("setting up the document: %d", res.StatusCode)
			}
			bare := hashing.XXH3.Sum(doc)

			res, body := readDo(t, http.MethodGet, base+"/doc", nil, "Accept-Encoding: "+enc)
			if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != enc {
				t.Fatalf("GET: %d Content-Encoding %q", res.StatusCode, res.Header.Get("Content-Encoding"))
			}
			if got := decode(t, enc, body); !bytes.Equal(got, doc) {
				t.Fatalf("decoded body %q", got)
			}
			tag := res.Header.Get("Etag")
			if tag != encodedTag(bare, enc) {
				t.Fatalf("ETag %q, want %q", tag, encodedTag(bare, enc))
			}

			res, body = readDo(t, http.MethodGet, base+"/doc", nil, "Accept-Encoding: "+enc, "If-None-Match: "+tag)
			if res.StatusCode != 304 || len(body) != 0 {
				t.Fatalf("If-None-Match %s: %d %q", tag, res.StatusCode, body)
			}
			// encode sends the unsuffixed tag on a 304 it did not compress;
			// both forms name the representation.
			t.Logf("304 ETag %q", res.Header.Get("Etag"))
			if got := res.Header.Get("Etag"); got != tag && got != bare {
				t.Errorf("304 ETag %q, want %q or %q", got, tag, bare)
			}
			res, _ = readDo(t, http.MethodGet, base+"/doc", nil, "Accept-Encoding: "+enc, "If-Match: "+tag)
			if res.StatusCode != 200 {
				t.Errorf("GET If-Match %s: %d", tag, res.StatusCode)
			}

			puts := len(up.requests(http.MethodPut))
			stale := encodedTag(hashing.XXH3.Sum([]byte("an older version")), enc)
			res, _ = readDo(t, http.MethodPut, base+"/doc", bytes.NewReader(doc), "Accept-Encoding: "+enc, "If-Match: "+stale)
			if res.StatusCode != 412 || len(up.requests(http.MethodPut)) != puts {
				t.Fatalf("PUT with a stale suffixed tag: %d, and the upstream saw %d PUTs, want 412 and %d", res.StatusCode, len(up.requests(http.MethodPut)), puts)
			}
			res, _ = readDo(t, http.MethodPut, base+"/doc", bytes.NewReader(doc), "Accept-Encoding: "+enc, "Content-Type: application/json", "If-Match: "+tag)
			if res.StatusCode != 204 {
				t.Fatalf("PUT If-Match %s: %d, want 204", tag, res.StatusCode)
			}
			if n := len(up.requests(http.MethodPut)); n != puts+1 {
				t.Fatalf("the upstream saw %d PUTs, want %d", n, puts+1)
			}
		})
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

// TestCaddyETagEventStream checks that an upstream's event stream reaches
// the client event by event, with and without encode in front.
func TestCaddyETagEventStream(t *testing.T) {
	var mu sync.Mutex
	gates := map[string]chan struct{}{}
	waited := make(chan bool, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gate := gates[r.URL.Query().Get("stream")]
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, "id: 1\ndata: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-gate:
			waited <- true
		case <-time.After(20 * time.Second):
			waited <- false
		}
		_, _ = io.WriteString(w, "id: 2\ndata: two\n\n")
	}))
	defer up.Close()
	host := strings.TrimPrefix(up.URL, "http://")
	base := startReadCaddy(t, "\thandle /compressed {\n\t\tencode gzip\n\t\tetag\n\t\treverse_proxy "+host+"\n\t}\n\thandle {\n\t\tetag\n\t\treverse_proxy "+host+"\n\t}")
	for i, path := range []string{"/plain", "/compressed"} {
		t.Run(path, func(t *testing.T) {
			stream := fmt.Sprint(i)
			gate := make(chan struct{})
			mu.Lock()
			gates[stream] = gate
			mu.Unlock()
			req, _ := http.NewRequest(http.MethodGet, base+path+"?stream="+stream, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			res, err := testutil.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if _, ok := res.Header["Etag"]; ok {
				t.Errorf("event stream got ETag %q", res.Header.Get("Etag"))
			}
			var body io.Reader = res.Body
			if res.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			br := bufio.NewReader(body)
			ev, err := readEvent(br)
			if err != nil || ev != "id: 1\ndata: one\n" {
				t.Fatalf("first event %q: %v", ev, err)
			}
			close(gate)
			ev, err = readEvent(br)
			if err != nil || ev != "id: 2\ndata: two\n" {
				t.Fatalf("second event %q: %v", ev, err)
			}
			if !<-waited {
				t.Fatal("the first event arrived only after the upstream sent the second")
			}
		})
	}
}

// TestCaddyETagOverMaxBody streams a body larger than max_body through
// Caddy: it arrives whole, untagged, at the upstream's pace, and the
// process allocates a small fraction of it.
func TestCaddyETagOverMaxBody(t *testing.T) {
	const size = 256 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	release := make(chan struct{})
	waited := make(chan bool, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		paced := r.URL.Path == "/paced"
		for sent := 0; sent < size; sent += len(chunk) {
			if paced && sent == 2<<20 {
				w.(http.Flusher).Flush()
				select {
				case <-release:
					waited <- true
				case <-time.After(20 * time.Second):
					waited <- false
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	base := startReadCaddy(t, "\tetag {\n\t\tmax_body 1MiB\n\t}\n\treverse_proxy "+strings.TrimPrefix(up.URL, "http://"))

	want := xxh3.New()
	for sent := 0; sent < size; sent += len(chunk) {
		_, _ = want.Write(chunk)
	}

	t.Run("paced", func(t *testing.T) {
		res, err := testutil.Client().Get(base + "/paced")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if _, ok := res.Header["Etag"]; ok {
			t.Errorf("body over max_body got ETag %q", res.Header.Get("Etag"))
		}
		if _, err := io.CopyN(io.Discard, res.Body, 3<<19); err != nil {
			t.Fatal(err)
		}
		close(release)
		if !<-waited {
			t.Fatal("the client got the first 1.5 MiB only after the upstream finished")
		}
		n, err := io.Copy(io.Discard, res.Body)
		if err != nil || n+3<<19 != size {
			t.Fatalf("received %d of %d bytes: %v", n+3<<19, size, err)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		// The HEAD goes upstream as a GET whose body is cut off once it
		// outgrows max_body; the client gets a GET's headers at once.
		head, body := readDo(t, http.MethodHead, base+"/whole", nil)
		get, err := testutil.Client().Get(base + "/whole")
		if err != nil {
			t.Fatal(err)
		}
		get.Body.Close()
		if head.StatusCode != 200 || len(body) != 0 {
			t.Fatalf("HEAD: %d with %d bytes", head.StatusCode, len(body))
		}
		if _, ok := head.Header["Etag"]; ok {
			t.Errorf("HEAD of a body over max_body got ETag %q", head.Header.Get("Etag"))
		}
		g, h := get.Header.Clone(), head.Header.Clone()
		delete(g, "Date")
		delete(h, "Date")
		if fmt.Sprint(g) != fmt.Sprint(h) {
			t.Errorf("HEAD header\n%v\nGET header\n%v", h, g)
		}
		// The connection and the server are fine afterwards.
		if res, _ := readDo(t, http.MethodHead, base+"/whole", nil); res.StatusCode != 200 {
			t.Errorf("second HEAD: %d", res.StatusCode)
		}
	})

	t.Run("heap", func(t *testing.T) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		res, err := testutil.Client().Get(base + "/whole")
		if err != nil {
			t.Fatal(err)
		}
		got := xxh3.New()
		n, err := io.Copy(got, res.Body)
		res.Body.Close()
		close(stop)
		wg.Wait()
		runtime.ReadMemStats(&after)
		if err != nil || n != size || got.Sum128() != want.Sum128() {
			t.Fatalf("received %d of %d bytes, intact %v: %v", n, size, got.Sum128() == want.Sum128(), err)
		}
		if _, ok := res.Header["Etag"]; ok {
			t.Errorf("body over max_body got ETag %q", res.Header.Get("Etag"))
		}
		allocated := after.TotalAlloc - before.TotalAlloc
		held := int64(peak.Load()) - int64(before.HeapInuse)
		t.Logf("streamed %d MiB through Caddy: allocated %.1f MiB, peak heap growth %.1f MiB", size>>20, float64(allocated)/(1<<20), float64(held)/(1<<20))
		if allocated > 24<<20 {
			t.Errorf("allocated %d MiB while streaming %d MiB", allocated>>20, size>>20)
		}
		if held > 16<<20 {
			t.Errorf("heap grew by %d MiB while streaming %d MiB", held>>20, size>>20)
		}
	})
}

func TestCaddyETagNon200AndCORS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.Error(w, "no such item", http.StatusNotFound)
		case "/created":
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "created")
		case "/broken":
			http.Error(w, "upstream broke", http.StatusInternalServerError)
		case "/cors":
			w.Header().Set("Access-Control-Allow-Origin", "https://app.example")
			w.Header().Set("Access-Control-Expose-Headers", "X-Total")
			_, _ = w.Write(readDoc)
		default:
			_, _ = w.Write(readDoc)
		}
	}))
	defer up.Close()
	base := startReadCaddy(t, "\tetag\n\treverse_proxy "+strings.TrimPrefix(up.URL, "http://"))
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{{"/missing", 404, "no such item\n"}, {"/created", 201, "created"}, {"/broken", 500, "upstream broke\n"}} {
		for _, cond := range [][]string{nil, {"If-None-Match: *"}, {`If-Match: "x"`}} {
			res, body := readDo(t, http.MethodGet, base+c.path, nil, cond...)
			if res.StatusCode != c.status || string(body) != c.body {
				t.Errorf("%s %q: %d %q, want %d %q", c.path, cond, res.StatusCode, body, c.status, c.body)
			}
			if v, ok := res.Header["Etag"]; ok {
				t.Errorf("%s %q: ETag %q", c.path, cond, v)
			}
		}
	}
	res, _ := readDo(t, http.MethodGet, base+"/cors", nil)
	if got := res.Header.Values("Access-Control-Expose-Headers"); !slices.Equal(got, []string{"X-Total", "ETag"}) || res.Header.Get("Etag") == "" {
		t.Errorf("CORS: Access-Control-Expose-Headers %q, ETag %q", got, res.Header.Get("Etag"))
	}
	res, _ = readDo(t, http.MethodGet, base+"/plain", nil)
	if v, ok := res.Header["Access-Control-Expose-Headers"]; ok {
		t.Errorf("no CORS: Access-Control-Expose-Headers %q", v)
	}
}

// TestCaddyETagUsersDoNotShareCache uses verify cache through Caddy: a
// write's precondition is checked against the writer's own representation.
func TestCaddyETagUsersDoNotShareCache(t *testing.T) {
	up := startReadUpstream(t)
	base := startReadCaddy(t, "\tetag {\n\t\tverify cache\n\t\tetag_after_write off\n\t}\n\treverse_proxy "+up.host)
	alice, _ := readDo(t, http.MethodGet, base+"/doc", nil, "Authorization: Bearer alice")
	bob, _ := readDo(t, http.MethodGet, base+"/doc", nil, "Authorization: Bearer bob")
	tagA, tagB := alice.Header.Get("Etag"), bob.Header.Get("Etag")
	if tagA == "" || tagA == tagB {
		t.Fatalf("alice's ETag %q, bob's %q", tagA, tagB)
	}
	res, _ := readDo(t, http.MethodPut, base+"/doc", strings.NewReader("{}"), "Authorization: Bearer bob", "If-Match: "+tagA)
	if res.StatusCode != 412 || res.Header.Get("Etag") != tagB {
		t.Fatalf("bob with alice's tag: %d ETag %q, want 412 with %q", res.StatusCode, res.Header.Get("Etag"), tagB)
	}
	if puts := up.requests(http.MethodPut); len(puts) != 0 {
		t.Fatalf("the upstream saw %q", puts)
	}
	res, _ = readDo(t, http.MethodPut, base+"/doc", strings.NewReader("{}"), "Authorization: Bearer alice", "If-Match: "+tagA)
	if res.StatusCode != 204 {
		t.Fatalf("alice with her tag: %d", res.StatusCode)
	}
	if puts := up.requests(http.MethodPut); !slices.Equal(puts, []string{"PUT /doc Bearer alice"}) {
		t.Fatalf("the upstream saw %q", puts)
	}
}

// TestCaddyETagUpgrade passes a protocol upgrade through etag untouched.
func TestCaddyETagUpgrade(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
		}
	}))
	defer up.Close()
	base := startReadCaddy(t, "\tetag\n\treverse_proxy "+strings.TrimPrefix(up.URL, "http://"))
	host := strings.TrimPrefix(base, "http://")
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: "+host+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	if _, ok := res.Header["Etag"]; ok {
		t.Errorf("101 got ETag %q", res.Header.Get("Etag"))
	}
	for _, msg := range []string{"one", "two"} {
		_, _ = io.WriteString(c, msg+"\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo "+msg+"\n" {
			t.Fatalf("after the upgrade: %q, %v", line, err)
		}
	}
}
