package legacyapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestServer() (*Server, *clock) {
	c := &clock{t: epoch.Add(123 * time.Millisecond)} // sub-second part must be dropped
	return newServer(c.now), c
}

func do(t *testing.T, h http.Handler, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoutes(t *testing.T) {
	lm := epoch.Format(http.TimeFormat)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		header     []string
		status     int
		wantBody   string            // exact, when set
		contains   []string          // substrings of the body
		wantHeader map[string]string // "" means absent
	}{
		{name: "get seeded item", method: "GET", path: "/items/1", status: 200,
			wantBody:   `{"count":0,"name":"widget"}` + "\n",
			wantHeader: map[string]string{"Content-Type": "application/json", "Last-Modified": lm, "Content-Length": "28", "ETag": ""}},
		{name: "head", method: "HEAD", path: "/items/1", status: 200, wantBody: "",
			wantHeader: map[string]string{"Content-Type": "application/json", "Last-Modified": lm, "Content-Length": "28"}},
		{name: "get unknown item", method: "GET", path: "/items/42", status: 404,
			wantBody:   `{"error":"no item \"42\"","status":404}` + "\n",
			wantHeader: map[string]string{"Content-Type": "application/json", "Last-Modified": ""}},
		{name: "list", method: "GET", path: "/items", status: 200,
			wantBody: `{"items":[{"id":"1","href":"/items/1","value":{"count":0,"name":"widget"}},` +
				`{"id":"2","href":"/items/2","value":{"count":3,"name":"gadget","tags":["blue","small"]}}]}` + "\n",
			wantHeader: map[string]string{"Last-Modified": lm}},
		{name: "index", method: "GET", path: "/", status: 200,
			contains:   []string{`"items":["/items/1","/items/2"]`, `"try":[`, "If-Match", "412"},
			wantHeader: map[string]string{"Content-Type": "application/json", "Last-Modified": lm}},
		{name: "unknown route", method: "GET", path: "/nothing/here", status: 404, contains: []string{`"status":404`, "/nothing/here"}},
		{name: "empty id", method: "GET", path: "/items/", status: 404, contains: []string{`"status":404`}},

		{name: "put replaces", method: "PUT", path: "/items/1", body: `{"name": "sprocket", "count": 1}`, status: 200,
			wantBody:   `{"count":1,"name":"sprocket"}` + "\n",
			wantHeader: map[string]string{"Last-Modified": lm, "Location": ""}},
		{name: "put creates", method: "PUT", path: "/items/abc", body: `{"z":1,"a":[true,null]}`, status: 201,
			wantBody:   `{"a":[true,null],"z":1}` + "\n",
			wantHeader: map[string]string{"Location": "/items/abc"}},
		{name: "put keeps number text and html", method: "PUT", path: "/items/1", body: `{"big":12345678901234567890,"f":1.50,"s":"<a&b>"}`, status: 200,
			wantBody: `{"big":12345678901234567890,"f":1.50,"s":"<a&b>"}` + "\n"},
		{name: "put not json", method: "PUT", path: "/items/1", body: `name=widget`, status: 400, contains: []string{"must be a JSON document"}},
		{name: "put two values", method: "PUT", path: "/items/1", body: `{} {}`, status: 400, contains: []string{"after the JSON value"}},
		{name: "put trailing garbage", method: "PUT", path: "/items/1", body: `{"a":1}x`, status: 400},
		{name: "put empty", method: "PUT", path: "/items/1", status: 400, contains: []string{"empty body"}},
		{name: "put too large", method: "PUT", path: "/items/1", body: `"` + strings.Repeat("x", MaxBody) + `"`, status: 413},

		{name: "merge patch", method: "PATCH", path: "/items/2", body: `{"count":4,"tags":null,"dims":{"w":2}}`,
			header: []string{"Content-Type", "application/merge-patch+json"}, status: 200,
			wantBody: `{"count":4,"dims":{"w":2},"name":"gadget"}` + "\n"},
		{name: "patch as application/json", method: "PATCH", path: "/items/1", body: `{"count":1}`,
			header: []string{"Content-Type", "application/json; charset=utf-8"}, status: 200,
			wantBody: `{"count":1,"name":"widget"}` + "\n"},
		{name: "patch wrong type", method: "PATCH", path: "/items/1", body: `{"count":1}`,
			header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415,
			contains: []string{"merge-patch"}, wantHeader: map[string]string{"Accept-Patch": "application/merge-patch+json"}},
		{name: "patch no type", method: "PATCH", path: "/items/1", body: `{"count":1}`, status: 415},
		{name: "patch unknown item", method: "PATCH", path: "/items/9", body: `{"count":1}`,
			header: []string{"Content-Type", "application/merge-patch+json"}, status: 404},
		{name: "patch not json", method: "PATCH", path: "/items/1", body: `{`,
			header: []string{"Content-Type", "application/merge-patch+json"}, status: 400},

		{name: "delete", method: "DELETE", path: "/items/1", status: 204, wantBody: ""},
		{name: "delete unknown", method: "DELETE", path: "/items/9", status: 404},
		{name: "post creates next id", method: "POST", path: "/items", body: `{"name":"new"}`, status: 201,
			wantBody: `{"name":"new"}` + "\n", wantHeader: map[string]string{"Location": "/items/3"}},
		{name: "post bad json", method: "POST", path: "/items", body: `[`, status: 400},

		{name: "post to item", method: "POST", path: "/items/1", status: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD, PUT, PATCH, DELETE", "Content-Type": "application/json"}},
		{name: "delete collection", method: "DELETE", path: "/items", status: 405, wantHeader: map[string]string{"Allow": "GET, HEAD, POST"}},
		{name: "put index", method: "PUT", path: "/", body: `{}`, status: 405, wantHeader: map[string]string{"Allow": "GET, HEAD"}},

		// Conditional requests mean nothing to this API: that is what the
		// gateway is for.
		{name: "if-none-match ignored", method: "GET", path: "/items/1", header: []string{"If-None-Match", "*"}, status: 200,
			wantBody: `{"count":0,"name":"widget"}` + "\n"},
		{name: "if-modified-since ignored", method: "GET", path: "/items/1",
			header: []string{"If-Modified-Since", epoch.Add(time.Hour).Format(http.TimeFormat)}, status: 200,
			wantBody: `{"count":0,"name":"widget"}` + "\n"},
		{name: "if-match ignored on put", method: "PUT", path: "/items/1", body: `{"v":2}`, header: []string{"If-Match", `"stale"`}, status: 200,
			wantBody: `{"v":2}` + "\n"},
		{name: "if-none-match star ignored on put", method: "PUT", path: "/items/1", body: `{"v":3}`, header: []string{"If-None-Match", "*"}, status: 200},
		{name: "if-unmodified-since ignored on delete", method: "DELETE", path: "/items/1",
			header: []string{"If-Unmodified-Since", epoch.Add(-time.Hour).Format(http.TimeFormat)}, status: 204},
		{name: "if-match ignored on patch", method: "PATCH", path: "/items/1", body: `{"count":7}`,
			header: []string{"Content-Type", "application/merge-patch+json", "If-Match", `"stale"`}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer()
			rec := do(t, s, tt.method, tt.path, tt.body, tt.header...)
			if rec.Code != tt.status {
				t.Fatalf("%s %s = %d, want %d; body %s", tt.method, tt.path, rec.Code, tt.status, rec.Body)
			}
			body := rec.Body.String()
			if tt.wantBody != "" || tt.status == 204 || tt.method == "HEAD" {
				if body != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
			}
			for _, sub := range tt.contains {
				if !strings.Contains(body, sub) {
					t.Errorf("body %s does not contain %q", body, sub)
				}
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if rec.Header().Get("ETag") != "" {
				t.Errorf("the legacy API sent an ETag: %s", rec.Header().Get("ETag"))
			}
			if tt.status >= 400 {
				var e struct {
					Error  string `json:"error"`
					Status int    `json:"status"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Status != tt.status || e.Error == "" {
					t.Errorf("error body %q is not {\"error\", \"status\": %d}: %v", body, tt.status, err)
				}
			}
		})
	}
}

// TestStateAndLastModified follows one item through its life and checks
// Last-Modified moves with each change, at second precision.
func TestStateAndLastModified(t *testing.T) {
	s, c := newTestServer()
	lastMod := func(rec *httptest.ResponseRecorder) time.Time {
		t.Helper()
		lm, err := http.ParseTime(rec.Header().Get("Last-Modified"))
		if err != nil {
			t.Fatalf("Last-Modified %q: %v", rec.Header().Get("Last-Modified"), err)
		}
		return lm
	}

	if got := lastMod(do(t, s, "GET", "/items/1", "")); !got.Equal(epoch) {
		t.Fatalf("seed Last-Modified = %v, want %v", got, epoch)
	}

	c.advance(90 * time.Second)
	if rec := do(t, s, "PUT", "/items/1", `{"name":"widget","count":1}`); rec.Code != 200 {
		t.Fatalf("PUT = %d", rec.Code)
	}
	rec := do(t, s, "GET", "/items/1", "")
	if rec.Body.String() != `{"count":1,"name":"widget"}`+"\n" {
		t.Errorf("after PUT, GET = %s", rec.Body)
	}
	if got := lastMod(rec); !got.Equal(epoch.Add(90 * time.Second)) {
		t.Errorf("after PUT, Last-Modified = %v", got)
	}
	// Another item keeps its own time; the collection takes the latest.
	if got := lastMod(do(t, s, "GET", "/items/2", "")); !got.Equal(epoch) {
		t.Errorf("untouched item Last-Modified = %v, want %v", got, epoch)
	}
	if got := lastMod(do(t, s, "GET", "/items", "")); !got.Equal(epoch.Add(90 * time.Second)) {
		t.Errorf("collection Last-Modified = %v", got)
	}

	c.advance(10 * time.Second)
	if rec := do(t, s, "PATCH", "/items/1", `{"count":null}`, "Content-Type", "application/merge-patch+json"); rec.Code != 200 {
		t.Fatalf("PATCH = %d", rec.Code)
	}
	rec = do(t, s, "GET", "/items/1", "")
	if rec.Body.String() != `{"name":"widget"}`+"\n" || !lastMod(rec).Equal(epoch.Add(100*time.Second)) {
		t.Errorf("after PATCH, GET = %s, Last-Modified %s", rec.Body, rec.Header().Get("Last-Modified"))
	}

	c.advance(10 * time.Second)
	if rec := do(t, s, "DELETE", "/items/1", ""); rec.Code != 204 {
		t.Fatalf("DELETE = %d", rec.Code)
	}
	if rec := do(t, s, "GET", "/items/1", ""); rec.Code != 404 {
		t.Errorf("after DELETE, GET = %d", rec.Code)
	}
	rec = do(t, s, "GET", "/items", "")
	if got := lastMod(rec); !got.Equal(epoch.Add(110 * time.Second)) {
		t.Errorf("after DELETE, collection Last-Modified = %v", got)
	}
	if strings.Contains(rec.Body.String(), `"id":"1"`) {
		t.Errorf("deleted item still listed: %s", rec.Body)
	}

	// POST after the delete takes the id after the largest left.
	if rec := do(t, s, "POST", "/items", `{}`); rec.Header().Get("Location") != "/items/3" {
		t.Errorf("POST Location = %q, want /items/3", rec.Header().Get("Location"))
	}
	// Ids sort numerically, then the rest by name.
	do(t, s, "PUT", "/items/10", `{}`)
	do(t, s, "PUT", "/items/b", `{}`)
	var list struct {
		Items []struct{ ID, Href string }
	}
	if err := json.Unmarshal(do(t, s, "GET", "/items", "").Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range list.Items {
		ids = append(ids, it.ID)
	}
	if want := []string{"2", "3", "10", "b"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("list ids = %v, want %v", ids, want)
	}
}

// TestMergePatchRFC7396 runs the examples of RFC 7396 Appendix A.
func TestMergePatchRFC7396(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, tt := range tests {
		target, err := decode([]byte(tt.target))
		if err != nil {
			t.Fatal(err)
		}
		patch, err := decode([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		got, err := encode(mergePatch(target, patch))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("merge %s with %s = %s, want %s", tt.target, tt.patch, got, tt.want)
		}
	}
}

// TestOverHTTP runs the API behind a real server on 127.0.0.1 and shows
// the lost update it permits: two clients read the same version, both
// write, and the first write vanishes without an error.
func TestOverHTTP(t *testing.T) {
	srv := httptest.NewServer(New())
	defer srv.Close()

	get := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/items/1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Last-Modified") == "" {
			t.Fatalf("GET = %d, Last-Modified %q", resp.StatusCode, resp.Header.Get("Last-Modified"))
		}
		return string(b)
	}
	put := func(body string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", srv.URL+"/items/1", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("If-Match", `"whatever"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT = %d", resp.StatusCode)
		}
	}

	alice, bob := get(), get()
	if alice != bob {
		t.Fatalf("two reads differ: %s vs %s", alice, bob)
	}
	put(`{"name":"widget","count":1,"by":"alice"}`)
	put(`{"name":"widget","count":1,"by":"bob"}`)
	if got := get(); got != `{"by":"bob","count":1,"name":"widget"}`+"\n" {
		t.Errorf("final = %s", got)
	}
}

// TestConcurrent hammers one Server from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	srv := httptest.NewServer(New())
	defer srv.Close()
	client := srv.Client()

	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				id := fmt.Sprintf("w%d", w)
				req, _ := http.NewRequest("PUT", srv.URL+"/items/"+id, strings.NewReader(fmt.Sprintf(`{"round":%d}`, i)))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				// Every worker also merges into the shared item 1.
				req, _ = http.NewRequest("PATCH", srv.URL+"/items/1", strings.NewReader(fmt.Sprintf(`{"w%d":%d}`, w, i)))
				req.Header.Set("Content-Type", "application/merge-patch+json")
				resp, err = client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("PATCH = %d", resp.StatusCode)
				}
				resp, err = client.Get(srv.URL + "/items")
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	resp, err := client.Get(srv.URL + "/items/1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	// Merge patches touch distinct members, so none is lost.
	for w := range workers {
		if got[fmt.Sprintf("w%d", w)] != float64(rounds-1) {
			t.Errorf("item 1 member w%d = %v, want %d", w, got[fmt.Sprintf("w%d", w)], rounds-1)
		}
	}
}
