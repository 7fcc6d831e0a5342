package hashing_test

import (
	"fmt"
	"testing"

	"github.com/etaggate/etaggate/hashing"
)

// BenchmarkHash measures hashing throughput as a response body is hashed
// while buffered: Reset, one Write of the whole body, AppendETag.
func BenchmarkHash(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i * 31)
		}
		for _, a := range algorithms {
			b.Run(fmt.Sprintf("%v/%dKiB", a, size>>10), func(b *testing.B) {
				h := a.New()
				dst := make([]byte, 0, 64)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					h.Reset()
					_, _ = h.Write(body)
					dst = h.AppendETag(dst[:0])
				}
				if len(dst) < 3 {
					b.Fatalf("no tag: %q", dst)
				}
			})
		}
	}
}

// BenchmarkScanner scans a typical If-None-Match field of three tags, as it
// sits in a request's header map.
func BenchmarkScanner(b *testing.B) {
	values := []string{`"5Z0o6c0dTQ-JqWb0q3Gk2w", W/"pT0cB2m7Rk-8yVq1xWf3Lg", "Jd9zQ4kT1eHcYb6uV0sN2A-gzip"`}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s := hashing.NewScanner(values)
		for s.Next() {
			n++
		}
		if s.Err() != nil {
			b.Fatal(s.Err())
		}
	}
	if n%3 != 0 || n == 0 {
		b.Fatalf("scanned %d tags", n)
	}
}
