package hashing_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

func strong(s string) hashing.Tag { return hashing.Tag{Opaque: `"` + s + `"`} }
func weak(s string) hashing.Tag   { return hashing.Tag{Opaque: `"` + s + `"`, Weak: true} }

// TestParseList follows RFC 9110 §8.8.3 (entity-tag), §13.1.1–13.1.2
// (If-Match, If-None-Match: "*" / #entity-tag) and the list rules of
// §5.6.1 (empty elements and OWS around commas are accepted).
func TestParseList(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    hashing.List
		wantErr bool
	}{
		// Absent or empty.
		{name: "no field", values: nil, want: hashing.List{}},
		{name: "empty value", values: []string{""}, want: hashing.List{}},
		{name: "only commas and whitespace", values: []string{" , ,\t,"}, want: hashing.List{}},
		{name: "several empty lines", values: []string{"", " ", ","}, want: hashing.List{}},

		// Single tags.
		{name: "strong", values: []string{`"abc"`}, want: hashing.List{Tags: []hashing.Tag{strong("abc")}}},
		{name: "weak", values: []string{`W/"abc"`}, want: hashing.List{Tags: []hashing.Tag{weak("abc")}}},
		{name: "empty opaque-tag", values: []string{`""`}, want: hashing.List{Tags: []hashing.Tag{strong("")}}},
		{name: "empty weak opaque-tag", values: []string{`W/""`}, want: hashing.List{Tags: []hashing.Tag{weak("")}}},
		{name: "every printable etagc", values: []string{"\"!#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\""},
			want: hashing.List{Tags: []hashing.Tag{{Opaque: "\"!#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\""}}}},
		{name: "obs-text", values: []string{"\"caf\xc3\xa9\x80\xff\""}, want: hashing.List{Tags: []hashing.Tag{{Opaque: "\"caf\xc3\xa9\x80\xff\""}}}},
		{name: "hash-shaped", values: []string{`"5Z0o6c0dTQ-JqWb0q3Gk2w"`}, want: hashing.List{Tags: []hashing.Tag{strong("5Z0o6c0dTQ-JqWb0q3Gk2w")}}},
		{name: "encode suffix kept", values: []string{`"abc-gzip"`}, want: hashing.List{Tags: []hashing.Tag{strong("abc-gzip")}}},

		// Lists.
		{name: "two tags", values: []string{`"a", "b"`}, want: hashing.List{Tags: []hashing.Tag{strong("a"), strong("b")}}},
		{name: "no space after comma", values: []string{`"a","b"`}, want: hashing.List{Tags: []hashing.Tag{strong("a"), strong("b")}}},
		{name: "mixed weak and strong", values: []string{`W/"a", "b", W/"c"`}, want: hashing.List{Tags: []hashing.Tag{weak("a"), strong("b"), weak("c")}}},
		{name: "commas inside quotes", values: []string{`"a,b", "c,,d",W/","`},
			want: hashing.List{Tags: []hashing.Tag{strong("a,b"), strong("c,,d"), weak(",")}}},
		{name: "W/ inside quotes", values: []string{`"W/x"`}, want: hashing.List{Tags: []hashing.Tag{strong("W/x")}}},
		{name: "star inside quotes", values: []string{`"*"`, `"a*"`}, want: hashing.List{Tags: []hashing.Tag{strong("*"), strong("a*")}}},
		{name: "odd whitespace", values: []string{" \t\"a\" \t,\t W/\"b\"\t "}, want: hashing.List{Tags: []hashing.Tag{strong("a"), weak("b")}}},
		{name: "empty elements", values: []string{`, ,"a"`}, want: hashing.List{Tags: []hashing.Tag{strong("a")}}},
		{name: "empty elements between and after", values: []string{`"a",,, ,"b",`}, want: hashing.List{Tags: []hashing.Tag{strong("a"), strong("b")}}},
		{name: "duplicates kept", values: []string{`"a", "a"`}, want: hashing.List{Tags: []hashing.Tag{strong("a"), strong("a")}}},
		{name: "several field lines", values: []string{`"a"`, `W/"b", "c"`, ``, `"d,e"`},
			want: hashing.List{Tags: []hashing.Tag{strong("a"), weak("b"), strong("c"), strong("d,e")}}},

		// "*".
		{name: "star", values: []string{"*"}, want: hashing.List{Any: true}},
		{name: "star with whitespace", values: []string{" \t* \t"}, want: hashing.List{Any: true}},
		{name: "star with empty elements", values: []string{", * ,"}, want: hashing.List{Any: true}},
		{name: "star with empty lines", values: []string{"", "*", " , "}, want: hashing.List{Any: true}},
		{name: "star twice", values: []string{"*, *"}, wantErr: true},
		{name: "star twice on two lines", values: []string{"*", "*"}, wantErr: true},
		{name: "star then tag", values: []string{`*, "a"`}, wantErr: true},
		{name: "tag then star", values: []string{`"a", *`}, wantErr: true},
		{name: "star then tag on next line", values: []string{`*`, `"a"`}, wantErr: true},
		{name: "tag then star on next line", values: []string{`"a"`, `*`}, wantErr: true},
		{name: "star glued to tag", values: []string{`*"a"`}, wantErr: true},
		{name: "weak star", values: []string{`W/*`}, wantErr: true},
		{name: "double star", values: []string{`**`}, wantErr: true},

		// Malformed.
		{name: "unquoted", values: []string{`abc`}, wantErr: true},
		{name: "unquoted after a tag", values: []string{`"a", abc`}, wantErr: true},
		{name: "unquoted on a later line", values: []string{`"a"`, `abc`}, wantErr: true},
		{name: "unterminated", values: []string{`"abc`}, wantErr: true},
		{name: "unterminated weak", values: []string{`W/"abc`}, wantErr: true},
		{name: "lone quote", values: []string{`"`}, wantErr: true},
		{name: "quote continued on next line", values: []string{`"a`, `b"`}, wantErr: true},
		{name: "lowercase weak prefix", values: []string{`w/"a"`}, wantErr: true},
		{name: "W without slash", values: []string{`W"a"`}, wantErr: true},
		{name: "space after W/", values: []string{`W/ "a"`}, wantErr: true},
		{name: "bare W/", values: []string{`W/`}, wantErr: true},
		{name: "space inside", values: []string{`"a b"`}, wantErr: true},
		{name: "tab inside", values: []string{"\"a\tb\""}, wantErr: true},
		{name: "NUL inside", values: []string{"\"a\x00b\""}, wantErr: true},
		{name: "CR LF inside", values: []string{"\"a\r\nb\""}, wantErr: true},
		{name: "DEL inside", values: []string{"\"a\x7fb\""}, wantErr: true},
		{name: "control char between tags", values: []string{"\"a\"\x01,\"b\""}, wantErr: true},
		{name: "two tags without comma", values: []string{`"a" "b"`}, wantErr: true},
		{name: "two tags glued", values: []string{`"a""b"`}, wantErr: true},
		{name: "semicolon separator", values: []string{`"a"; "b"`}, wantErr: true},
		{name: "single quotes", values: []string{`'a'`}, wantErr: true},
		{name: "escaped quote is not quoted-string", values: []string{`"a\"b"`}, wantErr: true},
		{name: "trailing garbage", values: []string{`"a"x`}, wantErr: true},
		{name: "garbage after good lines", values: []string{`"a"`, `"b"`, `"c`}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hashing.ParseList(tt.values)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseList(%q) = %+v, want an error", tt.values, got)
				}
				if !errors.Is(err, hashing.ErrMalformed) {
					t.Errorf("ParseList(%q) error %v does not wrap ErrMalformed", tt.values, err)
				}
				if !reflect.DeepEqual(got, hashing.List{}) {
					t.Errorf("ParseList(%q) returned %+v along with its error", tt.values, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseList(%q): %v", tt.values, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseList(%q) = %+v, want %+v", tt.values, got, tt.want)
			}
		})
	}
}

// TestScannerStopsAfterError checks the Scanner's contract: once Next has
// returned false it keeps doing so, and tags before the error were seen.
func TestScannerStopsAfterError(t *testing.T) {
	s := hashing.NewScanner([]string{`"a", W/"b"`, `bad, "c"`})
	var seen []hashing.Tag
	for s.Next() {
		seen = append(seen, s.Tag())
	}
	if want := []hashing.Tag{strong("a"), weak("b")}; !reflect.DeepEqual(seen, want) {
		t.Errorf("tags before the error = %+v, want %+v", seen, want)
	}
	if s.Err() == nil || !errors.Is(s.Err(), hashing.ErrMalformed) {
		t.Fatalf("Err() = %v, want ErrMalformed", s.Err())
	}
	if !strings.Contains(s.Err().Error(), "bad") {
		t.Errorf("error %q does not quote the offending text", s.Err())
	}
	if s.Next() || s.Next() {
		t.Error("Next returned true after an error")
	}
	if s.Any() {
		t.Error("Any() true after an error")
	}
}

func TestScannerAny(t *testing.T) {
	s := hashing.NewScanner([]string{" * "})
	if s.Next() {
		t.Fatalf("Next returned true for \"*\" with tag %+v", s.Tag())
	}
	if !s.Any() || s.Err() != nil {
		t.Fatalf("Any() = %v, Err() = %v; want true, nil", s.Any(), s.Err())
	}
	if s.Next() {
		t.Error("Next returned true after \"*\"")
	}
}

// TestScannerSharesMemory checks the Scanner's promise not to copy: the
// Opaque of a returned Tag points into the field value.
func TestScannerSharesMemory(t *testing.T) {
	v := `W/"abc", "def"`
	s := hashing.NewScanner([]string{v})
	if !s.Next() {
		t.Fatal(s.Err())
	}
	if got := s.Tag().Opaque; got != `"abc"` || !strings.Contains(v, got) {
		t.Fatalf("Tag().Opaque = %q", got)
	}
	// The field values live in the request's header map, as they do for
	// r.Header.Values("If-Match").
	values := []string{`"a", W/"b"`, `"c"`}
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		s := hashing.NewScanner(values)
		for s.Next() {
			n++
		}
	})
	if n != 3*101 {
		t.Errorf("scanned %d tags in 101 runs, want %d", n, 3*101)
	}
	if allocs != 0 {
		t.Errorf("scanning a valid list allocates %.1f times", allocs)
	}
}

func TestParseTag(t *testing.T) {
	tests := []struct {
		in      string
		want    hashing.Tag
		wantErr bool
	}{
		{in: `"abc"`, want: strong("abc")},
		{in: `W/"abc"`, want: weak("abc")},
		{in: `""`, want: strong("")},
		{in: " \t\"abc\" \t", want: strong("abc")},
		{in: `"a,b"`, want: strong("a,b")},
		{in: "\"\x80\xff\"", want: hashing.Tag{Opaque: "\"\x80\xff\""}},
		{in: ``, wantErr: true},
		{in: ` `, wantErr: true},
		{in: `*`, wantErr: true},
		{in: `abc`, wantErr: true},
		{in: `"abc`, wantErr: true},
		{in: `w/"abc"`, wantErr: true},
		{in: `W/ "abc"`, wantErr: true},
		{in: `"a", "b"`, wantErr: true},
		{in: `"a",`, wantErr: true},
		{in: `"a"x`, wantErr: true},
		{in: `"a b"`, wantErr: true},
		{in: "\"a\x00\"", wantErr: true},
		{in: "\"a\x7f\"", wantErr: true},
	}
	for _, tt := range tests {
		got, err := hashing.ParseTag(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseTag(%q) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTag(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); strings.Trim(tt.in, " \t") != s {
			t.Errorf("ParseTag(%q).String() = %q", tt.in, s)
		}
	}
}

func TestTagString(t *testing.T) {
	if s := strong("x").String(); s != `"x"` {
		t.Errorf("strong String() = %s", s)
	}
	if s := weak("x").String(); s != `W/"x"` {
		t.Errorf("weak String() = %s", s)
	}
}

// TestComparison is the table of RFC 9110 §8.8.3.2, plus the cases it
// implies: different opaque-tags never match, and comparison is exact
// (case-sensitive, no trimming).
func TestComparison(t *testing.T) {
	tests := []struct {
		a, b         hashing.Tag
		strong, weak bool
	}{
		{weak("1"), weak("1"), false, true},
		{weak("1"), weak("2"), false, false},
		{weak("1"), strong("1"), false, true},
		{strong("1"), strong("1"), true, true},
		{strong("1"), strong("2"), false, false},
		{strong("1"), weak("2"), false, false},
		{strong("a"), strong("A"), false, false},
		{strong(""), strong(""), true, true},
		{strong("abc"), strong("abc-gzip"), false, false},
	}
	for _, tt := range tests {
		for _, pair := range [][2]hashing.Tag{{tt.a, tt.b}, {tt.b, tt.a}} {
			if got := hashing.StrongMatch(pair[0], pair[1]); got != tt.strong {
				t.Errorf("StrongMatch(%s, %s) = %v, want %v", pair[0], pair[1], got, tt.strong)
			}
			if got := hashing.WeakMatch(pair[0], pair[1]); got != tt.weak {
				t.Errorf("WeakMatch(%s, %s) = %v, want %v", pair[0], pair[1], got, tt.weak)
			}
		}
	}
}

// TestComputedTagsRoundTrip checks that what the hashers produce is accepted
// back by the parsers and matches itself strongly.
func TestComputedTagsRoundTrip(t *testing.T) {
	for _, a := range algorithms {
		tag := a.Sum([]byte(`{"name":"widget","count":0}`))
		l, err := hashing.ParseList([]string{tag + ", " + "W/" + tag})
		if err != nil || len(l.Tags) != 2 {
			t.Fatalf("%v: ParseList of %s = %+v, %v", a, tag, l, err)
		}
		if !hashing.StrongMatch(l.Tags[0], hashing.Tag{Opaque: tag}) {
			t.Errorf("%v: %s does not strongly match itself", a, tag)
		}
		if hashing.StrongMatch(l.Tags[1], hashing.Tag{Opaque: tag}) || !hashing.WeakMatch(l.Tags[1], hashing.Tag{Opaque: tag}) {
			t.Errorf("%v: W/%s compares wrongly with %s", a, tag, tag)
		}
	}
}

// TestErrorsClipped: whatever the size of a malformed field, an error
// quotes at most a few hundred bytes of it, so that neither a problem body
// nor a log line grows with the field.
func TestErrorsClipped(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	for name, value := range map[string]string{
		"no commas":              strings.Repeat(`"a" `, 1<<18),
		"long tag, then garbage": `"` + long + `" x`,
		"unquoted":               long,
		"no closing quote":       `"` + long,
		"bad character":          `"` + long + "\x01\"",
	} {
		s := hashing.NewScanner([]string{value})
		for s.Next() {
		}
		if s.Err() == nil {
			t.Fatalf("%s: no error", name)
		}
		if msg := s.Err().Error(); len(msg) > 1024 || !strings.Contains(msg, "…") {
			t.Errorf("%s: a %d-byte error, want at most 1024 with an ellipsis: %.200s", name, len(msg), msg)
		}
	}
	if _, err := hashing.ParseTag(`"` + long + `"` + long); err == nil || len(err.Error()) > 1024 {
		t.Errorf("ParseTag of a long tag with trailing bytes: %d-byte error", len(fmt.Sprint(err)))
	}
}
