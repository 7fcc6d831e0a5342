package hashing_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

// refParse is a deliberately plain reading of RFC 9110 used to cross-check
// the Scanner. Each field line is a comma-separated list of elements; an
// element is empty, "*", or [ "W/" ] DQUOTE *etagc DQUOTE; "*" is valid only
// as the field's sole non-empty element. ok is false when the field is
// malformed.
func refParse(lines []string) (any bool, tags []hashing.Tag, ok bool) {
	stars, elems := 0, 0
	for _, line := range lines {
		i := 0
		for {
			// Skip OWS and empty elements.
			for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == ',') {
				i++
			}
			if i == len(line) {
				break
			}
			elems++
			switch {
			case line[i] == '*':
				stars++
				i++
			default:
				weak := false
				if strings.HasPrefix(line[i:], "W/") {
					weak = true
					i += 2
				}
				if i == len(line) || line[i] != '"' {
					return false, nil, false
				}
				end := strings.IndexByte(line[i+1:], '"')
				if end < 0 {
					return false, nil, false
				}
				opaque := line[i : i+1+end+1]
				for j := 1; j < len(opaque)-1; j++ {
					if !isEtagc(opaque[j]) {
						return false, nil, false
					}
				}
				tags = append(tags, hashing.Tag{Opaque: opaque, Weak: weak})
				i += len(opaque)
			}
			// After an element: OWS, then a comma or the end of the line.
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			if i < len(line) && line[i] != ',' {
				return false, nil, false
			}
		}
	}
	if stars > 0 {
		if stars == 1 && elems == 1 {
			return true, nil, true
		}
		return false, nil, false
	}
	return false, tags, true
}

// isEtagc reports whether c may appear inside the quotes of an entity-tag:
// %x21 / %x23-7E / obs-text (%x80-FF).
func isEtagc(c byte) bool {
	return c == '!' || ('#' <= c && c <= '~') || c >= 0x80
}

func validTag(t hashing.Tag) bool {
	o := t.Opaque
	if len(o) < 2 || o[0] != '"' || o[len(o)-1] != '"' {
		return false
	}
	for i := 1; i < len(o)-1; i++ {
		if !isEtagc(o[i]) {
			return false
		}
	}
	return true
}

// serialise writes l back as a single field line.
func serialise(l hashing.List) string {
	if l.Any {
		return "*"
	}
	parts := make([]string, len(l.Tags))
	for i, t := range l.Tags {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

var fuzzSeeds = [][2]string{
	{`"a"`, ``},
	{`W/"a", "b"`, `"c"`},
	{`"a,b", W/","`, ``},
	{`, ,"a"`, ` , `},
	{`*`, ``},
	{`*`, `*`},
	{`*, "a"`, ``},
	{`"a"`, `*`},
	{`abc`, ``},
	{`"abc`, `d"`},
	{`w/"a"`, ``},
	{"\"a\x00\"", ``},
	{"\"caf\xc3\xa9\x80\xff\"", ``},
	{" \t\"a\" \t,\t W/\"b\"\t ", ``},
	{`"a" "b"`, ``},
	{`W/ "a"`, `W/`},
	{`"5Z0o6c0dTQ-JqWb0q3Gk2w-gzip"`, ``},
}

// FuzzScanner feeds the Scanner two arbitrary field lines (the fuzzer may
// leave either empty) and checks it against refParse, that every accepted
// tag is well-formed, and that a parsed list survives a round trip.
func FuzzScanner(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, lines := range [][]string{{a}, {a, b}} {
			got, err := hashing.ParseList(lines)
			refAny, refTags, refOK := refParse(lines)
			if (err == nil) != refOK {
				t.Fatalf("ParseList(%q): err = %v, reference parser ok = %v", lines, err, refOK)
			}
			if err != nil {
				if !errors.Is(err, hashing.ErrMalformed) {
					t.Fatalf("ParseList(%q): error %v does not wrap ErrMalformed", lines, err)
				}
				continue
			}
			if got.Any != refAny || !reflect.DeepEqual(got.Tags, refTags) {
				t.Fatalf("ParseList(%q) = %+v, reference parser = any %v tags %+v", lines, got, refAny, refTags)
			}
			if got.Any && len(got.Tags) != 0 {
				t.Fatalf("ParseList(%q) = %+v: \"*\" together with tags", lines, got)
			}
			for _, tag := range got.Tags {
				if !validTag(tag) {
					t.Fatalf("ParseList(%q) accepted invalid tag %+v", lines, tag)
				}
				// A tag from a list parses alone to itself.
				if one, err := hashing.ParseTag(tag.String()); err != nil || one != tag {
					t.Fatalf("ParseTag(%q) = %+v, %v; want %+v", tag.String(), one, err, tag)
				}
			}

			// Round trip, as one line and as one line per tag.
			again, err := hashing.ParseList([]string{serialise(got)})
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("ParseList(%q) = %+v; reserialised %q parses to %+v, %v", lines, got, serialise(got), again, err)
			}
			var perLine []string
			for _, tag := range got.Tags {
				perLine = append(perLine, tag.String())
			}
			if got.Any {
				perLine = []string{"*"}
			}
			again, err = hashing.ParseList(perLine)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("ParseList(%q) = %+v; one line per tag %q parses to %+v, %v", lines, got, perLine, again, err)
			}

			// The Scanner used directly agrees with ParseList and stays
			// stopped once it has stopped.
			s := hashing.NewScanner(lines)
			n := 0
			for s.Next() {
				if n >= len(got.Tags) || s.Tag() != got.Tags[n] {
					t.Fatalf("Scanner tag %d = %+v, ParseList gave %+v", n, s.Tag(), got.Tags)
				}
				n++
			}
			if n != len(got.Tags) || s.Any() != got.Any || s.Err() != nil || s.Next() {
				t.Fatalf("Scanner over %q: %d tags, any %v, err %v; ParseList %+v", lines, n, s.Any(), s.Err(), got)
			}
		}
	})
}

// FuzzParseTag checks ParseTag against the list parser: a string is a valid
// entity-tag exactly when, trimmed, it is a one-element list without a
// comma outside the quotes, and the result formats back to the input.
func FuzzParseTag(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0])
	}
	f.Add(` W/"x" `)
	f.Add(`""`)
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := hashing.ParseTag(s)
		trimmed := strings.Trim(s, " \t")
		if err != nil {
			if tag != (hashing.Tag{}) {
				t.Fatalf("ParseTag(%q) returned %+v with error %v", s, tag, err)
			}
			// The reference must reject it too, unless it is a list of
			// several elements, or of one with empty elements around it,
			// which ParseTag rightly refuses.
			_, tags, ok := refParse([]string{trimmed})
			if ok && len(tags) == 1 && tags[0].String() == trimmed {
				t.Fatalf("ParseTag(%q) rejected a valid entity-tag: %v", s, err)
			}
			return
		}
		if !validTag(tag) {
			t.Fatalf("ParseTag(%q) accepted invalid tag %+v", s, tag)
		}
		if tag.String() != trimmed {
			t.Fatalf("ParseTag(%q).String() = %q, want %q", s, tag.String(), trimmed)
		}
		l, err := hashing.ParseList([]string{s})
		if err != nil || l.Any || len(l.Tags) != 1 || l.Tags[0] != tag {
			t.Fatalf("ParseTag(%q) = %+v but ParseList gives %+v, %v", s, tag, l, err)
		}
	})
}
