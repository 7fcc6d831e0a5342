package proxy

import (
	"bytes"
	"math/bits"
	"sync"
)

// Buffer capacity classes are powers of two from 4 KiB to 32 MiB.
const (
	minBufferClass = 12
	maxBufferClass = 25
)

// bufferPool recycles body buffers by capacity class, so that a 1 MiB body
// is read into a recycled buffer of at least 1 MiB instead of one regrown
// from empty, which would allocate and clear twice the body on every
// request.
type bufferPool struct {
	classes [maxBufferClass + 1]sync.Pool
}

// classOf returns the smallest class that holds size bytes.
func classOf(size int64) int {
	if size <= 1<<minBufferClass {
		return minBufferClass
	}
	return bits.Len64(uint64(size - 1))
}

// capFor returns the capacity of the buffer get returns for size bytes.
func capFor(size int64) int64 {
	if c := classOf(size); c <= maxBufferClass {
		return 1 << c
	}
	return size
}

// get returns an empty buffer with room for size bytes (0 when unknown).
func (p *bufferPool) get(size int64) *bytes.Buffer {
	c := classOf(size)
	if c > maxBufferClass {
		return bytes.NewBuffer(make([]byte, 0, size))
	}
	if b, ok := p.classes[c].Get().(*bytes.Buffer); ok {
		return b
	}
	return bytes.NewBuffer(make([]byte, 0, 1<<c))
}

// put recycles b into the largest class its capacity fills.
func (p *bufferPool) put(b *bytes.Buffer) {
	c := bits.Len(uint(b.Cap())) - 1
	if c < minBufferClass || c > maxBufferClass {
		return
	}
	b.Reset()
	p.classes[c].Put(b)
}
