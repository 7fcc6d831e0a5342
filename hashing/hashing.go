// Package hashing computes strong entity-tags from response bodies and parses
// and compares the entity-tags clients send back (RFC 9110 §8.8.3).
package hashing

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
)

// Algorithm names a hash function that turns a body into an entity-tag.
type Algorithm uint8

// The supported algorithms. XXH3 (128-bit) is the default: it is not
// cryptographic, but an ETag only has to tell versions of one resource
// apart, and it is an order of magnitude faster than SHA-256.
const (
	XXH3 Algorithm = iota
	SHA256
	BLAKE3
)

// ParseAlgorithm maps a configuration name to an Algorithm.
func ParseAlgorithm(name string) (Algorithm, error) {
	switch name {
	case "", "xxh3":
		return XXH3, nil
	case "sha256":
		return SHA256, nil
	case "blake3":
		return BLAKE3, nil
	}
	return 0, fmt.Errorf("unknown hash %q: use xxh3, sha256 or blake3", name)
}

// String returns the configuration name of a.
func (a Algorithm) String() string {
	switch a {
	case XXH3:
		return "xxh3"
	case SHA256:
		return "sha256"
	case BLAKE3:
		return "blake3"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// Hasher accumulates a body and formats its entity-tag. It is not safe for
// concurrent use; pool Hashers rather than share them.
type Hasher interface {
	// Write adds p to the hash; it never fails.
	Write(p []byte) (int, error)
	// Reset forgets everything written.
	Reset()
	// AppendETag appends the quoted strong entity-tag of what was written,
	// such as "5Z0o6c0dTQ-JqWb0q3Gk2w", to dst.
	AppendETag(dst []byte) []byte
}

// New returns a Hasher for a.
func (a Algorithm) New() Hasher {
	switch a {
	case SHA256:
		return &stdHasher{h: sha256.New()}
	case BLAKE3:
		return &stdHasher{h: blake3.New()}
	default:
		return &xxh3Hasher{h: xxh3.New128()}
	}
}

// Sum returns the quoted strong entity-tag of body.
func (a Algorithm) Sum(body []byte) string {
	h := a.New()
	_, _ = h.Write(body)
	return string(h.AppendETag(nil))
}

var enc = base64.RawURLEncoding

func appendQuoted(dst, sum []byte) []byte {
	dst = append(dst, '"')
	dst = enc.AppendEncode(dst, sum)
	return append(dst, '"')
}

type xxh3Hasher struct {
	h *xxh3.Hasher128
}

func (x *xxh3Hasher) Write(p []byte) (int, error) { return x.h.Write(p) }
func (x *xxh3Hasher) Reset()                      { x.h.Reset() }
func (x *xxh3Hasher) AppendETag(dst []byte) []byte {
	sum := x.h.Sum128().Bytes()
	return appendQuoted(dst, sum[:])
}

type stdHasher struct {
	h   hash.Hash
	sum [32]byte
}

func (s *stdHasher) Write(p []byte) (int, error) { return s.h.Write(p) }
func (s *stdHasher) Reset()                      { s.h.Reset() }
func (s *stdHasher) AppendETag(dst []byte) []byte {
	return appendQuoted(dst, s.h.Sum(s.sum[:0]))
}
