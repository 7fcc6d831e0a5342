package hashing_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
	"lukechampine.com/blake3"

	"github.com/etaggate/etaggate/hashing"
)

var algorithms = []hashing.Algorithm{hashing.XXH3, hashing.SHA256, hashing.BLAKE3}

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in      string
		want    hashing.Algorithm
		wantErr bool
	}{
		{"", hashing.XXH3, false},
		{"xxh3", hashing.XXH3, false},
		{"sha256", hashing.SHA256, false},
		{"blake3", hashing.BLAKE3, false},
		{"SHA256", 0, true},
		{"md5", 0, true},
		{"xxh3 ", 0, true},
	}
	for _, tt := range tests {
		got, err := hashing.ParseAlgorithm(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseAlgorithm(%q) = %v, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "xxh3, sha256 or blake3") {
				t.Errorf("ParseAlgorithm(%q) error %q does not name the valid values", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestAlgorithmStringRoundTrip(t *testing.T) {
	for _, a := range algorithms {
		got, err := hashing.ParseAlgorithm(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v", a.String(), got, err, a)
		}
	}
	if s := hashing.Algorithm(200).String(); s != "Algorithm(200)" {
		t.Errorf("unknown algorithm String() = %q", s)
	}
}

// reference computes the entity-tag of body independently of the package:
// the library's one-shot digest, base64url without padding, in quotes.
func reference(a hashing.Algorithm, body []byte) string {
	var sum []byte
	switch a {
	case hashing.XXH3:
		u := xxh3.Hash128(body)
		sum = binary.BigEndian.AppendUint64(sum, u.Hi)
		sum = binary.BigEndian.AppendUint64(sum, u.Lo)
	case hashing.SHA256:
		s := sha256.Sum256(body)
		sum = s[:]
	case hashing.BLAKE3:
		s := blake3.Sum256(body)
		sum = s[:]
	default:
		panic("unknown algorithm")
	}
	return `"` + base64.RawURLEncoding.EncodeToString(sum) + `"`
}

func hexTag(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return `"` + base64.RawURLEncoding.EncodeToString(b) + `"`
}

// TestKnownAnswers checks published digests: the XXH3-128 of the empty
// input from the xxHash sanity vectors, SHA-256 from FIPS 180-2, BLAKE3 from
// the reference implementation.
func TestKnownAnswers(t *testing.T) {
	tests := []struct {
		a    hashing.Algorithm
		in   string
		want string // hex digest
	}{
		{hashing.XXH3, "", "99aa06d3014798d86001c324468d497f"},
		{hashing.SHA256, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{hashing.SHA256, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{hashing.BLAKE3, "", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{hashing.BLAKE3, "abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"},
	}
	for _, tt := range tests {
		want := hexTag(t, tt.want)
		if got := tt.a.Sum([]byte(tt.in)); got != want {
			t.Errorf("%v.Sum(%q) = %s, want %s", tt.a, tt.in, got, want)
		}
	}
}

// inputs covers the sizes where the hash implementations switch strategy:
// the XXH3 short-input paths (0, 1–3, 4–8, 9–16, 17–128, 129–240), its
// stripes and blocks, and BLAKE3's 1 KiB chunks.
func inputs() [][]byte {
	var out [][]byte
	for _, n := range []int{0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 4096, 64<<10 + 7, 1 << 20} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		out = append(out, b)
	}
	return append(out, []byte(`{"name":"widget","count":0}`))
}

func TestSumMatchesReference(t *testing.T) {
	for _, a := range algorithms {
		for _, in := range inputs() {
			if got, want := a.Sum(in), reference(a, in); got != want {
				t.Errorf("%v.Sum(%d bytes) = %s, want %s", a, len(in), got, want)
			}
		}
	}
}

func TestTagShape(t *testing.T) {
	wantLen := map[hashing.Algorithm]int{
		hashing.XXH3:   2 + 22, // 16 bytes
		hashing.SHA256: 2 + 43, // 32 bytes
		hashing.BLAKE3: 2 + 43,
	}
	for _, a := range algorithms {
		tag := a.Sum([]byte("hello"))
		if len(tag) != wantLen[a] {
			t.Errorf("%v tag %s has length %d, want %d", a, tag, len(tag), wantLen[a])
		}
		parsed, err := hashing.ParseTag(tag)
		if err != nil || parsed.Weak || parsed.Opaque != tag {
			t.Errorf("%v tag %s does not parse back as a strong tag: %+v, %v", a, tag, parsed, err)
		}
		if a.Sum([]byte("hello")) == a.Sum([]byte("hellp")) {
			t.Errorf("%v gives two bodies the same tag", a)
		}
	}
}

func TestIncrementalWrite(t *testing.T) {
	for _, a := range algorithms {
		for _, in := range inputs() {
			want := reference(a, in)
			for _, piece := range []int{1, 7, 64, 1000, 4096} {
				if piece > len(in) && piece != 1 {
					continue
				}
				h := a.New()
				for rest := in; len(rest) > 0; {
					n := min(piece, len(rest))
					if w, err := h.Write(rest[:n]); w != n || err != nil {
						t.Fatalf("%v Write = %d, %v; want %d, nil", a, w, err, n)
					}
					rest = rest[n:]
				}
				if got := string(h.AppendETag(nil)); got != want {
					t.Errorf("%v: %d bytes in pieces of %d = %s, want %s", a, len(in), piece, got, want)
				}
			}
		}
	}
}

func TestResetAndAppend(t *testing.T) {
	for _, a := range algorithms {
		h := a.New()
		_, _ = h.Write([]byte("something else entirely"))
		h.Reset()
		_, _ = h.Write([]byte("abc"))
		want := reference(a, []byte("abc"))
		if got := string(h.AppendETag(nil)); got != want {
			t.Errorf("%v after Reset = %s, want %s", a, got, want)
		}
		// AppendETag does not consume the state: asking twice gives the
		// same tag, and appends after what dst holds.
		got := h.AppendETag([]byte("ETag: "))
		if string(got) != "ETag: "+want {
			t.Errorf("%v AppendETag with prefix = %q", a, got)
		}
		// Writing after AppendETag continues the same stream.
		_, _ = h.Write([]byte("def"))
		if got, want := string(h.AppendETag(nil)), reference(a, []byte("abcdef")); got != want {
			t.Errorf("%v Write after AppendETag = %s, want %s", a, got, want)
		}
		h.Reset()
		if got, want := string(h.AppendETag(nil)), reference(a, nil); got != want {
			t.Errorf("%v after Reset with nothing written = %s, want %s", a, got, want)
		}
	}
}

// TestHashingDoesNotAllocate guards the per-response cost of the hashers.
func TestHashingDoesNotAllocate(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 4096)
	for _, a := range []hashing.Algorithm{hashing.XXH3, hashing.SHA256, hashing.BLAKE3} {
		h := a.New()
		dst := make([]byte, 0, 64)
		allocs := testing.AllocsPerRun(100, func() {
			h.Reset()
			_, _ = h.Write(body)
			dst = h.AppendETag(dst[:0])
		})
		if allocs != 0 {
			t.Errorf("%v: Reset+Write+AppendETag allocates %.1f times", a, allocs)
		}
	}
}
