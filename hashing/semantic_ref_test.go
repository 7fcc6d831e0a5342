package hashing_test

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strconv"

	"github.com/etaggate/etaggate/hashing"
)

// node is a JSON value as encoding/json reads it, with member order kept:
// the reference the semantic hasher is checked against.
type node struct {
	kind byte   // '{', '[', '"' (string) or '0' (number or literal)
	text string // a scalar: the decoded string, or the number or literal as written
	keys []string
	kids []*node
}

// parseRef reads a valid JSON body into a tree.
func parseRef(body []byte) *node {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	n, err := parseNode(dec)
	if err != nil {
		panic(err)
	}
	return n
}

func parseNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &node{kind: byte(v)}
		for dec.More() {
			if n.kind == '{' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			kid, err := parseNode(dec)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, kid)
		}
		if _, err := dec.Token(); err != nil && err != io.EOF {
			return nil, err
		}
		return n, nil
	case string:
		return &node{kind: '"', text: v}, nil
	case json.Number:
		return &node{kind: '0', text: string(v)}, nil
	case bool:
		return &node{kind: '0', text: strconv.FormatBool(v)}, nil
	}
	return &node{kind: '0', text: "null"}, nil
}

// serialise writes n compactly, strings escaped as encoding/json does.
func (n *node) serialise(b *bytes.Buffer) {
	switch n.kind {
	case '"':
		s, _ := json.Marshal(n.text)
		b.Write(s)
	case '0':
		b.WriteString(n.text)
	default:
		b.WriteByte(n.kind)
		for i, kid := range n.kids {
			if i > 0 {
				b.WriteByte(',')
			}
			if n.kind == '{' {
				s, _ := json.Marshal(n.keys[i])
				b.Write(s)
				b.WriteByte(':')
			}
			kid.serialise(b)
		}
		b.WriteByte(n.kind + 2) // '{'+2 is '}', '['+2 is ']'
	}
}

func (n *node) bytes() []byte {
	var b bytes.Buffer
	n.serialise(&b)
	return b.Bytes()
}

// equal compares trees; scalars by kind and text.
func (n *node) equal(m *node) bool {
	if n.kind != m.kind || n.text != m.text || !reflect.DeepEqual(n.keys, m.keys) || len(n.kids) != len(m.kids) {
		return false
	}
	for i := range n.kids {
		if !n.kids[i].equal(m.kids[i]) {
			return false
		}
	}
	return true
}

// leaves appends the scalars of n.
func (n *node) leaves(dst []*node) []*node {
	if n.kind != '{' && n.kind != '[' {
		return append(dst, n)
	}
	for _, kid := range n.kids {
		dst = kid.leaves(dst)
	}
	return dst
}

// matches reports whether ptr names path (length equal) or, with prefix,
// a location below path.
func matches(ptr hashing.Pointer, path []string, prefix bool) bool {
	if len(ptr) < len(path) || (len(ptr) == len(path)) == prefix {
		return false
	}
	for i, seg := range path {
		if ptr[i] != hashing.Wildcard && ptr[i] != seg {
			return false
		}
	}
	return true
}

func anyMatch(ptrs []hashing.Pointer, path []string, prefix bool) bool {
	for _, p := range ptrs {
		if matches(p, path, prefix) {
			return true
		}
	}
	return false
}

// refFilter is the plain reading of the rule: json_ignore drops every
// listed location; json_only keeps listed locations whole and the
// containers on the way to them, and the whole body when none is present.
// Scalars of the result are the original tree's nodes.
func refFilter(n *node, ptrs []hashing.Pointer, only bool) *node {
	matched := 0
	out := refWalk(n, nil, ptrs, only, &matched)
	if only && matched == 0 {
		return n
	}
	return out
}

func refWalk(n *node, path []string, ptrs []hashing.Pointer, only bool, matched *int) *node {
	if anyMatch(ptrs, path, false) {
		if only {
			*matched++
			return n
		}
		return nil
	}
	container := n.kind == '{' || n.kind == '['
	if only && !(container && anyMatch(ptrs, path, true)) {
		return nil
	}
	if !container {
		return n
	}
	out := &node{kind: n.kind}
	for i, kid := range n.kids {
		seg := strconv.Itoa(i)
		if n.kind == '{' {
			seg = n.keys[i]
		}
		k := refWalk(kid, append(path[:len(path):len(path)], seg), ptrs, only, matched)
		if k == nil {
			continue
		}
		if n.kind == '{' {
			out.keys = append(out.keys, n.keys[i])
		}
		out.kids = append(out.kids, k)
	}
	return out
}
