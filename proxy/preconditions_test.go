package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/etaggate/etaggate/hashing"
)

func TestTagIs(t *testing.T) {
	cur := hashing.Tag{Opaque: `"abc"`}
	tests := []struct {
		client hashing.Tag
		strong bool
		want   bool
	}{
		{hashing.Tag{Opaque: `"abc"`}, true, true},
		{hashing.Tag{Opaque: `"abc"`, Weak: true}, true, false},
		{hashing.Tag{Opaque: `"abc"`, Weak: true}, false, true},
		{hashing.Tag{Opaque: `"abc-gzip"`}, true, true},
		{hashing.Tag{Opaque: `"abc-zstd"`}, true, true},
		{hashing.Tag{Opaque: `"abc-br"`}, false, true},
		{hashing.Tag{Opaque: `"abc-gzipx"`}, true, false},
		{hashing.Tag{Opaque: `"abcd"`}, true, false},
		{hashing.Tag{Opaque: `"ab"`}, true, false},
		{hashing.Tag{Opaque: `"xyz-gzip"`}, true, false},
		{hashing.Tag{Opaque: `"-gzip"`}, true, false},
	}
	for _, tt := range tests {
		if got := tagIs(tt.client, cur, tt.strong); got != tt.want {
			t.Errorf("tagIs(%s, %s, strong=%v) = %v, want %v", tt.client, cur, tt.strong, got, tt.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before := lm.Add(-time.Hour).Format(http.TimeFormat)
	after := lm.Add(time.Hour).Format(http.TimeFormat)
	same := lm.Format(http.TimeFormat)
	exists := current{exists: true, etag: hashing.Tag{Opaque: `"v1"`}, lastModified: lm}
	weakCur := current{exists: true, etag: hashing.Tag{Opaque: `"v1"`, Weak: true}, lastModified: lm}
	missing := current{}

	type hdr = map[string]string
	tests := []struct {
		name   string
		method string
		h      hdr
		cur    current
		status int
		field  string
	}{
		{"no preconditions", "GET", hdr{}, exists, 0, ""},
		{"If-Match true", "GET", hdr{"If-Match": `"v1"`}, exists, 0, ""},
		{"If-Match in list", "PUT", hdr{"If-Match": `"x", "v1"`}, exists, 0, ""},
		{"If-Match false", "GET", hdr{"If-Match": `"v0"`}, exists, 412, "If-Match"},
		{"If-Match weak never matches", "PUT", hdr{"If-Match": `W/"v1"`}, exists, 412, "If-Match"},
		{"If-Match against weak current", "PUT", hdr{"If-Match": `"v1"`}, weakCur, 412, "If-Match"},
		{"If-Match star exists", "PUT", hdr{"If-Match": `*`}, exists, 0, ""},
		{"If-Match star missing", "PUT", hdr{"If-Match": `*`}, missing, 412, "If-Match"},
		{"If-Match tag missing", "DELETE", hdr{"If-Match": `"v1"`}, missing, 412, "If-Match"},
		{"If-Match true beats IUS false", "PUT", hdr{"If-Match": `"v1"`, "If-Unmodified-Since": before}, exists, 0, ""},
		{"IUS false", "PUT", hdr{"If-Unmodified-Since": before}, exists, 412, "If-Unmodified-Since"},
		{"IUS equal is true", "PUT", hdr{"If-Unmodified-Since": same}, exists, 0, ""},
		{"IUS true", "PUT", hdr{"If-Unmodified-Since": after}, exists, 0, ""},
		{"IUS invalid ignored", "PUT", hdr{"If-Unmodified-Since": "yesterday"}, exists, 0, ""},
		{"IUS missing resource ignored", "PUT", hdr{"If-Unmodified-Since": before}, missing, 0, ""},
		{"INM match GET", "GET", hdr{"If-None-Match": `"v1"`}, exists, 304, "If-None-Match"},
		{"INM weak match GET", "HEAD", hdr{"If-None-Match": `W/"v1"`}, exists, 304, "If-None-Match"},
		{"INM match PUT", "PUT", hdr{"If-None-Match": `"v1"`}, exists, 412, "If-None-Match"},
		{"INM no match", "GET", hdr{"If-None-Match": `"v0"`}, exists, 0, ""},
		{"INM star exists PUT", "PUT", hdr{"If-None-Match": `*`}, exists, 412, "If-None-Match"},
		{"INM star missing PUT", "PUT", hdr{"If-None-Match": `*`}, missing, 0, ""},
		{"INM star exists GET", "GET", hdr{"If-None-Match": `*`}, exists, 304, "If-None-Match"},
		{"If-Match false before INM", "GET", hdr{"If-Match": `"v0"`, "If-None-Match": `"v1"`}, exists, 412, "If-Match"},
		{"INM no match ignores IMS", "GET", hdr{"If-None-Match": `"v0"`, "If-Modified-Since": after}, exists, 0, ""},
		{"INM match beats IMS", "GET", hdr{"If-None-Match": `"v1"`, "If-Modified-Since": before}, exists, 304, "If-None-Match"},
		{"IMS not modified", "GET", hdr{"If-Modified-Since": after}, exists, 304, "If-Modified-Since"},
		{"IMS equal not modified", "GET", hdr{"If-Modified-Since": same}, exists, 304, "If-Modified-Since"},
		{"IMS modified", "GET", hdr{"If-Modified-Since": before}, exists, 0, ""},
		{"IMS ignored on PUT", "PUT", hdr{"If-Modified-Since": after}, exists, 0, ""},
		{"encode suffix in If-Match", "PUT", hdr{"If-Match": `"v1-gzip"`}, exists, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, "http://x/", nil)
			for k, v := range tt.h {
				r.Header.Set(k, v)
			}
			v, err := evaluate(r, tt.cur)
			if err != nil {
				t.Fatal(err)
			}
			if v.status != tt.status || v.header != tt.field {
				t.Errorf("got %d %q, want %d %q", v.status, v.header, tt.status, tt.field)
			}
		})
	}
}

func TestEvaluateMalformed(t *testing.T) {
	for _, h := range []string{"If-Match", "If-None-Match"} {
		r, _ := http.NewRequest("PUT", "http://x/", nil)
		r.Header.Set(h, "abc")
		if _, err := evaluate(r, current{exists: true, etag: hashing.Tag{Opaque: `"abc"`}}); err == nil {
			t.Errorf("%s: abc: no error", h)
		} else if fe, ok := err.(fieldError); !ok || fe.field != h {
			t.Errorf("%s: error %v does not name the field", h, err)
		}
		if err := checkSyntax(r); err == nil {
			t.Errorf("checkSyntax %s: abc: no error", h)
		}
	}
}
