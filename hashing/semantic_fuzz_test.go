package hashing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/etaggate/etaggate/hashing"
)

// refPointer is RFC 6901 §3–4 read plainly, plus this package's limits.
func refPointer(s string) (hashing.Pointer, bool) {
	if s == "" || s[0] != '/' {
		return nil, false
	}
	var p hashing.Pointer
	for _, seg := range strings.Split(s[1:], "/") {
		for i := 0; i < len(seg); i++ {
			if seg[i] == '~' && (i+1 == len(seg) || (seg[i+1] != '0' && seg[i+1] != '1')) {
				return nil, false
			}
		}
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		if !utf8.ValidString(seg) || len(seg) > hashing.MaxSegment {
			return nil, false
		}
		p = append(p, seg)
	}
	return p, true
}

// FuzzParsePointer checks ParsePointer against refPointer and that a
// parsed pointer formats back to one that parses to itself.
func FuzzParsePointer(f *testing.F) {
	for _, s := range []string{"", "/", "//", "/a", "/a/b", "/a~1b", "/m~0n", "/~01", "/~10", "/~", "/~2", "a", "/items/*/updated_at", "/*", "/é", "/\xff", "/0/-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := hashing.ParsePointer(s)
		ref, ok := refPointer(s)
		if (err == nil) != ok {
			t.Fatalf("ParsePointer(%q) = %q, %v; reference ok = %v", s, p, err, ok)
		}
		if err != nil {
			if !errors.Is(err, hashing.ErrPointer) {
				t.Fatalf("ParsePointer(%q): %v does not wrap ErrPointer", s, err)
			}
			return
		}
		if !slices.Equal(p, ref) {
			t.Fatalf("ParsePointer(%q) = %q, reference %q", s, []string(p), []string(ref))
		}
		again, err := hashing.ParsePointer(p.String())
		if err != nil || !slices.Equal(again, p) {
			t.Fatalf("ParsePointer(%q) = %q; its String %q parses to %q, %v", s, []string(p), p.String(), []string(again), err)
		}
	})
}

var semanticSeeds = []struct {
	body, ptrs string
	only       bool
}{
	{`{"generated_at":"2026","id":1,"items":[{"id":1,"updated_at":2,"tags":["a"]},{"id":2,"updated_at":3}]}`, "/generated_at\n/items/*/updated_at", false},
	{`{"etag":"5","name":"x","fused":{"etag":"9"}}`, "/etag", true},
	{`{"meta":{"version":3,"at":1},"id":4}`, "/meta/version\n/id", true},
	{`[{"a":1},{"a":2}]`, "/*/a", false},
	{`{"a\/b":1,"\u00e9":2,"x":[true,false,null,-1.5e3]}`, "/a~1b\n/é", false},
	{` [ 1 , 2 ] `, "/0", true},
	{`"x"`, "/a", true},
	{`{"a":{"b":{"c":1}}}`, "/a/*/c\n/*/b", false},
	{`{"a":1,}`, "/a", false},
}

// FuzzSemantic checks the semantic hasher on any body and pointers: it
// calls JSON what encoding/json does; what it hashes is the reference
// filter's result, whatever the chunking; a re-indented copy hashes the
// same; a counted value changed hashes differently and a left-out one
// changed does not.
func FuzzSemantic(f *testing.F) {
	for _, s := range semanticSeeds {
		f.Add([]byte(s.body), s.ptrs, s.only, uint8(3), uint16(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, ptrList string, only bool, chunk uint8, pick uint16) {
		var ptrs []hashing.Pointer
		for _, s := range strings.Split(ptrList, "\n") {
			if p, err := hashing.ParsePointer(s); err == nil {
				ptrs = append(ptrs, p)
			}
		}
		if len(ptrs) > 8 {
			ptrs = ptrs[:8]
		}
		var s *hashing.Semantic
		var err error
		if only {
			s, err = hashing.NewSemantic(nil, ptrs)
		} else {
			s, err = hashing.NewSemantic(ptrs, nil)
		}
		if err != nil {
			t.Skip(err) // too many states
		}
		got, ok := hashing.Stream(s, body, 0)
		if ok != json.Valid(body) {
			t.Fatalf("%q: valid = %v, json.Valid = %v", body, ok, !ok)
		}
		if !ok {
			return
		}
		if pieces, _ := hashing.Stream(s, body, int(chunk)%17+1); !bytes.Equal(pieces, got) {
			t.Fatalf("%q in pieces of %d hashed %q, whole %q", body, int(chunk)%17+1, pieces, got)
		}
		tree := parseRef(body)
		want := refFilter(tree, ptrs, only)
		if !json.Valid(got) || !parseRef(got).equal(want) {
			t.Fatalf("%q under %q (only %v): hashed %q, reference %q", body, ptrs, only, got, want.bytes())
		}
		checkTag(t, s, body, got)
		var indented bytes.Buffer
		_ = json.Indent(&indented, body, "\n ", "\t")
		if again, _ := hashing.Stream(s, indented.Bytes(), 0); !bytes.Equal(again, got) {
			t.Fatalf("%q re-indented as %q hashed %q, not %q", body, indented.Bytes(), again, got)
		}
		checkChange(t, s, tree, want, int(pick))
	})
}

// checkTag checks that the tag is the hash of the stream.
func checkTag(t *testing.T, s *hashing.Semantic, body, stream []byte) {
	h := s.NewHasher(hashing.XXH3)
	_, _ = h.Write(body)
	if tag := string(h.AppendETag(nil)); tag != hashing.XXH3.Sum(stream) {
		t.Fatalf("%q: tag %s, but the stream %q hashes to %s", body, tag, stream, hashing.XXH3.Sum(stream))
	}
}

// checkChange changes one scalar of tree: one the filter kept must change
// the tag, one it left out must not.
func checkChange(t *testing.T, s *hashing.Semantic, tree, kept *node, pick int) {
	all := tree.leaves(nil)
	if len(all) == 0 {
		return
	}
	leaf := all[pick%len(all)]
	counted := slices.Contains(kept.leaves(nil), leaf)
	before := tagOf(s, tree.bytes())
	old := leaf.text
	switch {
	case leaf.kind == '"':
		leaf.text += "x"
	case old == "0":
		leaf.text = "1"
	default:
		leaf.text = "0"
	}
	after := tagOf(s, tree.bytes())
	leaf.text = old
	if counted == (before == after) {
		t.Fatalf("%s: changing %q (counted %v) to another value: tag %s → %s", tree.bytes(), old, counted, before, after)
	}
}

func tagOf(s *hashing.Semantic, body []byte) string {
	h := s.NewHasher(hashing.XXH3)
	_, _ = h.Write(body)
	if !h.Valid() {
		panic(h.Err())
	}
	return string(h.AppendETag(nil))
}
