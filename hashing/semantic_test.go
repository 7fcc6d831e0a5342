package hashing_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

func mustSemantic(t testing.TB, ignore, only []string) *hashing.Semantic {
	t.Helper()
	parse := func(list []string) []hashing.Pointer {
		var ps []hashing.Pointer
		for _, s := range list {
			p, err := hashing.ParsePointer(s)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		return ps
	}
	s, err := hashing.NewSemantic(parse(ignore), parse(only))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSemanticStream pins what is hashed: the compact token stream with
// the json_ignore members left out, or only the json_only members and the
// containers on the way to them, the same whatever the body's chunking.
func TestSemanticStream(t *testing.T) {
	tests := []struct {
		name         string
		ignore, only []string
		body, want   string
	}{
		{name: "no pointers: compact form", body: " {\n \"a\" : [1, 2.5e-3 ,true,false,null] ,\"b\":\"x y\"}\r\n", want: `{"a":[1,2.5e-3,true,false,null],"b":"x y"}`},
		{name: "scalar body", body: ` -0.5 `, want: `-0.5`},
		{name: "string escapes kept as written", body: `["\u0041\n\"", "A"]`, want: `["\u0041\n\"","A"]`},
		{name: "ignore first member", ignore: []string{"/generated_at"}, body: `{"generated_at": "2026-01-01T00:00:00Z", "id": 1, "name": "w"}`, want: `{"id":1,"name":"w"}`},
		{name: "ignore middle and last", ignore: []string{"/b", "/d"}, body: `{"a":1,"b":{"x":[1,2]},"c":3,"d":4}`, want: `{"a":1,"c":3}`},
		{name: "ignore every member", ignore: []string{"/a", "/b"}, body: `{"a":1,"b":2}`, want: `{}`},
		{name: "ignore absent member", ignore: []string{"/zzz"}, body: `{"a":1}`, want: `{"a":1}`},
		{name: "ignore nested in every element", ignore: []string{"/items/*/updated_at"}, body: `{"items":[{"id":1,"updated_at":5},{"updated_at":6,"id":2},{"id":3}],"n":3}`, want: `{"items":[{"id":1},{"id":2},{"id":3}],"n":3}`},
		{name: "ignore array element by index", ignore: []string{"/list/1"}, body: `{"list":["a","b","c"]}`, want: `{"list":["a","c"]}`},
		{name: "ignore first element", ignore: []string{"/0"}, body: `[9,8,7]`, want: `[8,7]`},
		{name: "ignore wildcard object level", ignore: []string{"/*/meta"}, body: `{"a":{"meta":1,"v":2},"b":{"v":3,"meta":{"x":1}},"c":5}`, want: `{"a":{"v":2},"b":{"v":3},"c":5}`},
		{name: "literal and wildcard together", ignore: []string{"/*/x", "/a/y"}, body: `{"a":{"x":1,"y":2,"z":3},"b":{"x":1,"y":2}}`, want: `{"a":{"z":3},"b":{"y":2}}`},
		{name: "escaped name matches", ignore: []string{"/a~1b", "/t~0"}, body: `{"a\/b":1,"t~":2,"c":3}`, want: `{"c":3}`},
		{name: "unicode escape in name", ignore: []string{"/é"}, body: `{"\u00e9":1,"e":2}`, want: `{"e":2}`},
		{name: "surrogate pair in name", ignore: []string{"/😀"}, body: `{"\ud83d\ude00":1,"e":2}`, want: `{"e":2}`},
		{name: "pointer into a scalar", ignore: []string{"/a/b"}, body: `{"a":5}`, want: `{"a":5}`},
		{name: "index segment on an object", ignore: []string{"/0"}, body: `{"0":1,"1":2}`, want: `{"1":2}`},
		{name: "deep ignore", ignore: []string{"/a/b/c"}, body: `{"a":{"b":{"c":1,"d":2},"e":[{"c":3}]}}`, want: `{"a":{"b":{"d":2},"e":[{"c":3}]}}`},
		{name: "only one member", only: []string{"/etag"}, body: `{"etag":"3","name":"x","generated_at":1}`, want: `{"etag":"3"}`},
		{name: "only nested", only: []string{"/meta/version", "/id"}, body: `{"id":7,"meta":{"a":1,"version":4},"x":[1]}`, want: `{"id":7,"meta":{"version":4}}`},
		{name: "only through arrays", only: []string{"/items/*/id"}, body: `{"items":[{"id":1,"sub":[1]},{"x":2},{"id":3}],"total":3}`, want: `{"items":[{"id":1},{},{"id":3}]}`},
		{name: "only keeps everything inside", only: []string{"/main"}, body: `{"main":{"a":[1,{"b":2}]},"fused":{"c":3}}`, want: `{"main":{"a":[1,{"b":2}]}}`},
		{name: "only scalar on the way is left out", only: []string{"/meta/version", "/id"}, body: `{"meta":5,"id":1}`, want: `{"id":1}`},
		{name: "only, none present: whole body", only: []string{"/etag"}, body: `{ "name": "x", "n": 1 }`, want: `{"name":"x","n":1}`},
		{name: "only, scalar body: whole body", only: []string{"/etag"}, body: ` 12 `, want: `12`},
		{name: "only with index", only: []string{"/1"}, body: `["a","b","c"]`, want: `["b"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSemantic(t, tc.ignore, tc.only)
			for _, chunk := range []int{0, 1, 2, 3, 5, 8} {
				got, ok := hashing.Stream(s, []byte(tc.body), chunk)
				if !ok {
					t.Fatalf("chunk %d: %s is not JSON to the hasher", chunk, tc.body)
				}
				if string(got) != tc.want {
					t.Fatalf("chunk %d: hashed %s, want %s", chunk, got, tc.want)
				}
			}
		})
	}
}

// TestSemanticInvalid checks that the hasher calls JSON exactly what
// encoding/json does.
func TestSemanticInvalid(t *testing.T) {
	bodies := []string{
		``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{1:2}`, `[1 2]`, `01`, `-`, `1.`, `1e`, `1e+`, `.5`, `+1`,
		`tru`, `truex`, `nul`, `"abc`, "\"a\x01\"", `"\x"`, `"\u12g4"`, `{"a":1}}`, `[1]]`, `[}`, `{]`, `{"a":1} x`,
		`<html></html>`, `{"a":[1,{"b":2]}`, `[` + strings.Repeat("[", 10000) + strings.Repeat("]", 10001),
		// valid ones, to be accepted
		`{}`, `[]`, `0`, `-0`, `1e+5`, `1E-5`, `0.25`, `"\u00e9\ud83d\ude00"`, "\"caf\xc3\xa9\xff\"", ` true `, `null`,
		`[` + strings.Repeat("[", 9999) + strings.Repeat("]", 10000),
	}
	s := mustSemantic(t, []string{"/a"}, nil)
	for _, b := range bodies {
		for _, chunk := range []int{0, 1, 4} {
			_, ok := hashing.Stream(s, []byte(b), chunk)
			if want := json.Valid([]byte(b)); ok != want {
				t.Errorf("chunk %d: %.40q: valid = %v, json.Valid = %v", chunk, b, ok, want)
			}
		}
	}
}

// TestSemanticLargeBody hashes bodies far larger than the hasher's own
// buffers, cut into uneven pieces, and checks the tag against the
// reference filter's output hashed in one go.
func TestSemanticLargeBody(t *testing.T) {
	rules := []struct {
		ignore, only []string
	}{
		{},
		{ignore: []string{"/generated_at", "/items/*/updated_at", "/items/*/children/*/tags"}},
		{only: []string{"/items/*/etag", "/items/*/id"}},
		{only: []string{"/nothing"}},
	}
	for _, indent := range []bool{false, true} {
		body := apiBody(1<<20, indent)
		tree := parseRef(body)
		for _, rule := range rules {
			s := mustSemantic(t, rule.ignore, rule.only)
			ptrs := rule.ignore
			if rule.only != nil {
				ptrs = rule.only
			}
			var ps []hashing.Pointer
			for _, p := range ptrs {
				pp, _ := hashing.ParsePointer(p)
				ps = append(ps, pp)
			}
			want := hashing.XXH3.Sum(refFilter(tree, ps, rule.only != nil).bytes())
			h := s.NewHasher(hashing.XXH3)
			for round := range 2 { // the second round reuses the hasher
				h.Reset()
				for p, n := body, 1; len(p) > 0; n = n*7%9973 + 1 {
					k := min(n, len(p))
					_, _ = h.Write(p[:k])
					p = p[k:]
				}
				if got := string(h.AppendETag(nil)); !h.Valid() || got != want {
					t.Fatalf("indent %v, rule %+v, round %d: tag %s (valid %v), want %s", indent, rule, round, got, h.Valid(), want)
				}
			}
		}
	}
}
