package feed

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/etaggate/etaggate/proxy"
)

func TestOf(t *testing.T) {
	cases := []struct {
		method, target string
		status         int
		location, etag string
		want           Change
		reported       bool
	}{
		{"PUT", "/items/1?x=1", 200, "", `"a"`, Change{Updated, "/items/1", `"a"`, "PUT"}, true},
		{"PATCH", "/items/1", 204, "", "", Change{Updated, "/items/1", "", "PATCH"}, true},
		{"POST", "/items/1/actions", 202, "/jobs/7", "", Change{Updated, "/items/1/actions", "", "POST"}, true},
		{"POST", "/items", 201, "/items/3", `"c"`, Change{Created, "/items/3", "", "POST"}, true},
		{"POST", "/items/", 201, "3", "", Change{Created, "/items/3", "", "POST"}, true},
		{"POST", "/items", 201, "http://10.0.0.5:9080/items/4?v=1", "", Change{Created, "/items/4", "", "POST"}, true},
		{"PUT", "/items/9", 201, "/items/9", `"n"`, Change{Created, "/items/9", `"n"`, "PUT"}, true},
		{"PUT", "/items/9", 201, "", `"n"`, Change{Created, "/items/9", `"n"`, "PUT"}, true},
		{"PUT", "/items/9", 201, "http://[bad", `"n"`, Change{Created, "/items/9", `"n"`, "PUT"}, true},
		{"DELETE", "/items/2", 204, "", `"d"`, Change{Removed, "/items/2", "", "DELETE"}, true},
		{"DELETE", "/items/2", 201, "/elsewhere", "", Change{Removed, "/items/2", "", "DELETE"}, true},
		{"PROPPATCH", "/items/2", 207, "", "", Change{}, false},
		{"MERGE", "/items/2", 200, "", "", Change{}, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.location != "" {
			h.Set("Location", c.location)
		}
		w := proxy.Written{Request: httptest.NewRequest(c.method, c.target, nil), Method: c.method, Status: c.status, Header: h, ETag: c.etag}
		got, ok := Of(w)
		if ok != c.reported || got != c.want {
			t.Errorf("%s %s %d Location %q: %+v %v, want %+v %v", c.method, c.target, c.status, c.location, got, ok, c.want, c.reported)
		}
	}
}

func TestTopic(t *testing.T) {
	if newTopic([]string{"/b/", "/a/1", "/a/"}) != newTopic([]string{"/a/", "/b/"}) {
		t.Error("sets that select the same paths give different topics")
	}
	if newTopic(nil) != newTopic([]string{"/a", ""}) {
		t.Error("an empty prefix does not select every path")
	}
	cases := []struct {
		prefixes []string
		path     string
		match    bool
	}{
		{nil, "/anything", true},
		{[]string{"/items/"}, "/items/1", true},
		{[]string{"/items/"}, "/items", false},
		{[]string{"/items/1"}, "/items/10", true},
		{[]string{"/a:b", "/c"}, "/a:b/1", true},
		{[]string{"/12:x", "/c"}, "/12:x", true},
		{[]string{"/12:x", "/c"}, "/12", false},
		{[]string{"/x", "/c"}, "/d", false},
	}
	for _, c := range cases {
		if got := newTopic(c.prefixes).Match(&Change{Path: c.path}, 0); got != c.match {
			t.Errorf("prefixes %q, path %q: %v", c.prefixes, c.path, got)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	for _, c := range []Change{
		{Updated, "/items/1", `"MY9aWvAaXaej3Eynx0C-Vg"`, "PATCH"},
		{Removed, "/a \"b\"\n\u2028c", "", "DELETE"},
	} {
		b := topic{}.AppendJSON(nil, &c, 0)
		var got struct {
			Type, Path, Method string
			ETag               *string
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		etag := ""
		if got.ETag != nil {
			etag = *got.ETag
		}
		if got.Type != c.Type || got.Path != c.Path || got.Method != c.Method || etag != c.ETag || (c.ETag == "") != (got.ETag == nil) {
			t.Errorf("%+v encoded as %s", c, b)
		}
		for _, ch := range b {
			if ch == '\n' || ch == '\r' {
				t.Errorf("%s breaks an SSE data line", b)
			}
		}
	}
}
