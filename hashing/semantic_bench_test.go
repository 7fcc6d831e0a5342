package hashing_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/hashing"
)

// apiBody builds a JSON document of about size bytes shaped like a legacy
// API's list response: volatile members at the top, a version member and
// nested lists in every item. indent pretty-prints it, as many APIs do.
func apiBody(size int, indent bool) []byte {
	type sub struct {
		Kind  string   `json:"kind"`
		Tags  []string `json:"tags"`
		Score float64  `json:"score"`
	}
	type item struct {
		ID        int     `json:"id"`
		Name      string  `json:"name"`
		Etag      string  `json:"etag"`
		Price     float64 `json:"price"`
		Active    bool    `json:"active"`
		Owner     *string `json:"owner"`
		UpdatedAt string  `json:"updated_at"`
		Children  []sub   `json:"children"`
	}
	doc := struct {
		GeneratedAt string `json:"generated_at"`
		RequestID   string `json:"request_id"`
		Items       []item `json:"items"`
	}{GeneratedAt: "2026-11-25T04:43:41.123456Z", RequestID: "7f9c2ba4-e88f-4c8e-9d3b-1a2b3c4d5e6f"}
	encode := func() []byte {
		b, _ := json.Marshal(doc)
		if indent {
			var buf bytes.Buffer
			_ = json.Indent(&buf, b, "", "  ")
			b = buf.Bytes()
		}
		return b
	}
	add := func(i int) {
		doc.Items = append(doc.Items, item{
			ID: i, Name: fmt.Sprintf("widget number %d, \"deluxe\" édition", i), Etag: fmt.Sprintf("v%d", i*7),
			Price: float64(i) * 1.25, Active: i%3 == 0, UpdatedAt: "2026-11-25T04:43:41Z",
			Children: []sub{{Kind: "part", Tags: []string{"a", "bb", "ccc"}, Score: -0.5e-3}, {Kind: "note", Tags: nil, Score: 12}},
		})
	}
	// Estimate the item count from the first items, then top up one by one.
	add(0)
	one := len(encode())
	add(1)
	per := len(encode()) - one
	for i := 2; i < (size-one)/per; i++ {
		add(i)
	}
	for b := encode(); ; b = encode() {
		if len(b) >= size {
			return b
		}
		add(len(doc.Items))
	}
}

// denseBody is bench/'s upstream document: small numbers, short strings
// and booleans, a token every three bytes, the hardest shape per byte.
func denseBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-128; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","price":%d.%02d,"in_stock":%t}`, i, i, i*37%1000, i%100, i%3 != 0)
	}
	b.WriteString(`],"pad":"`)
	for b.Len() < size-2 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

// BenchmarkSemantic measures the semantic hasher on JSON bodies written in
// the 32 KiB pieces reverse_proxy copies with: Reset, the Writes,
// AppendETag. The 64 KiB bodies are an API's list response, indented and
// compact; the 4 KiB one is go run ./bench's document under its rows'
// json_ignore (a top-level member; a member of every item too).
func BenchmarkSemantic(b *testing.B) {
	type rule struct {
		name         string
		ignore, only []string
	}
	api := []rule{
		{name: "compact-only"},
		{name: "json_ignore", ignore: []string{"/generated_at", "/request_id", "/items/*/updated_at"}},
		{name: "json_only", only: []string{"/items/*/etag", "/items/*/id"}},
	}
	dense := []rule{
		{name: "json_ignore-top"},
		{name: "json_ignore-every-item"},
	}
	dense[0].ignore = []string{"/pad"}
	dense[1].ignore = []string{"/items/*/in_stock", "/pad"}
	for _, c := range []struct {
		shape string
		body  []byte
		rules []rule
	}{
		{"indented/64KiB", apiBody(64<<10, true), api},
		{"compact/64KiB", apiBody(64<<10, false), api},
		{"dense/4KiB", denseBody(4 << 10), dense},
	} {
		for _, r := range c.rules {
			b.Run(r.name+"/"+c.shape, func(b *testing.B) {
				benchHasher(b, mustSemantic(b, r.ignore, r.only).NewHasher(hashing.XXH3), c.body)
			})
		}
	}
	b.Run("bytes/dense/4KiB", func(b *testing.B) { benchHasher(b, hashing.XXH3.New(), denseBody(4<<10)) })
}

func benchHasher(b *testing.B, h hashing.Hasher, body []byte) {
	dst := make([]byte, 0, 64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	began := threadCPU(b)
	for b.Loop() {
		h.Reset()
		for p := body; len(p) > 0; {
			n := min(32<<10, len(p))
			_, _ = h.Write(p[:n])
			p = p[n:]
		}
		dst = h.AppendETag(dst[:0])
	}
	cpu := threadCPU(b) - began
	b.ReportMetric(float64(b.N)*float64(len(body))/cpu.Seconds()/1e6, "cpu-MB/s")
	if j, ok := h.(*hashing.JSONHasher); ok && !j.Valid() {
		b.Fatal(j.Err())
	}
}

// threadCPU returns the CPU time the calling thread has used. On a machine
// shared with other work, throughput per CPU second is what a body costs;
// wall time also counts the waits for a core.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
