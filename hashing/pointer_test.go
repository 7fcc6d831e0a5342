package hashing_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

// TestParsePointer follows RFC 6901 §3–5 (escapes ~0 and ~1, decoded left
// to right; the empty segment is the member named "") with the wildcard
// segment and the refusals of the whole-body pointer.
func TestParsePointer(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "/generated_at", want: []string{"generated_at"}},
		{in: "/items/*/updated_at", want: []string{"items", "*", "updated_at"}},
		{in: "/a~1b", want: []string{"a/b"}},
		{in: "/m~0n", want: []string{"m~n"}},
		{in: "/~01", want: []string{"~1"}},
		{in: "/~10", want: []string{"/0"}},
		{in: "/", want: []string{""}},
		{in: "//x", want: []string{"", "x"}},
		{in: "/0/-", want: []string{"0", "-"}},
		{in: "/é", want: []string{"é"}},
		{in: "", err: "names the whole body"},
		{in: "generated_at", err: `starts with "/"`},
		{in: "/a~", err: `"~" must be followed by 0`},
		{in: "/a~2", err: `"~" must be followed by 0`},
		{in: "/\xff", err: "not valid UTF-8"},
		{in: "/" + strings.Repeat("x", hashing.MaxSegment+1), err: "more than 256"},
	}
	for _, tc := range tests {
		p, err := hashing.ParsePointer(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, hashing.ErrPointer) {
				t.Errorf("ParsePointer(%.20q) = %q, %v; want an ErrPointer saying %q", tc.in, []string(p), err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(p, tc.want) {
			t.Errorf("ParsePointer(%q) = %q, %v; want %q", tc.in, []string(p), err, tc.want)
		}
		if p.String() != tc.in {
			t.Errorf("ParsePointer(%q).String() = %q", tc.in, p.String())
		}
	}
}

// TestNewSemanticRefuses checks the rules that cannot be compiled.
func TestNewSemanticRefuses(t *testing.T) {
	a, _ := hashing.ParsePointer("/a")
	if _, err := hashing.NewSemantic([]hashing.Pointer{a}, []hashing.Pointer{a}); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("both lists: %v", err)
	}
	if _, err := hashing.NewSemantic([]hashing.Pointer{{}}, nil); err == nil || !strings.Contains(err.Error(), "whole body") {
		t.Errorf("empty pointer: %v", err)
	}
	// Wildcards beside literals at every level multiply states: sixteen
	// levels of them are refused, not built.
	var ptrs []hashing.Pointer
	for i := range 16 {
		p := slices.Repeat(hashing.Pointer{"*"}, 16)
		p[i] = "x"
		ptrs = append(ptrs, p)
	}
	if _, err := hashing.NewSemantic(ptrs, nil); err == nil || !strings.Contains(err.Error(), "matching states") {
		t.Errorf("state explosion: %v", err)
	}
}

// TestSemanticTags checks the properties an operator relies on, through
// real tags: whitespace does not count, order and values do, a left-out
// member does not, and bodies split anywhere hash alike.
func TestSemanticTags(t *testing.T) {
	s := mustSemantic(t, []string{"/generated_at", "/items/*/updated_at"}, nil)
	base := `{"generated_at":"2026-01-01","items":[{"id":1,"updated_at":"x"},{"id":2}],"v":3}`
	same := []string{
		"{\n  \"generated_at\": \"2026-01-02\",\n  \"items\": [ {\"id\": 1, \"updated_at\": \"y\"}, {\"id\": 2} ],\n  \"v\": 3\n}\n",
		`{"items":[{"id":1},{"id":2,"updated_at":"new"}],"v":3}`,
	}
	different := []string{
		`{"generated_at":"2026-01-01","items":[{"id":1,"updated_at":"x"},{"id":2}],"v":4}`,
		`{"generated_at":"2026-01-01","v":3,"items":[{"id":1,"updated_at":"x"},{"id":2}]}`,
		`{"generated_at":"2026-01-01","items":[{"id":2},{"id":1,"updated_at":"x"}],"v":3}`,
		`{"generated_at":"2026-01-01","items":[{"id":1,"updated_at":"x"},{"id":2}],"v":3.0}`,
	}
	want := tagOf(s, []byte(base))
	for _, b := range same {
		if got := tagOf(s, []byte(b)); got != want {
			t.Errorf("%s: tag %s, want %s as for %s", b, got, want, base)
		}
	}
	for _, b := range different {
		if got := tagOf(s, []byte(b)); got == want {
			t.Errorf("%s: tag %s, the same as %s", b, got, base)
		}
	}
	// A compact body with no listed member keeps its plain tag.
	plain := `{"id":1,"name":"w"}`
	if got := tagOf(s, []byte(plain)); got != hashing.XXH3.Sum([]byte(plain)) {
		t.Errorf("%s: semantic tag %s differs from the byte tag %s", plain, got, hashing.XXH3.Sum([]byte(plain)))
	}
}

// TestSemanticErr checks the reasons given for a body that is not JSON.
func TestSemanticErr(t *testing.T) {
	s := mustSemantic(t, []string{"/a"}, nil)
	for body, want := range map[string]string{
		`<html>`:      "expected a value at byte 0",
		`{"a":1,}`:    "expected a member name at byte 7",
		`{"a":1`:      "ends inside a value after 6 bytes",
		"":            "no value in 0 bytes",
		`{"a":1} {}`:  "unexpected data after the value at byte 8",
		"[\"a\x01\"]": "control character in a string at byte 3",
	} {
		h := s.NewHasher(hashing.XXH3)
		_, _ = h.Write([]byte(body))
		if err := h.Err(); err == nil || !strings.Contains(err.Error(), want) || h.Valid() {
			t.Errorf("%q: Err() = %v, want %q", body, err, want)
		}
	}
	h := s.NewHasher(hashing.XXH3)
	_, _ = h.Write([]byte(`{"a":1}`))
	if err := h.Err(); err != nil || !h.Valid() {
		t.Errorf("valid body: Err() = %v", err)
	}
}
