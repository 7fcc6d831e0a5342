package hashing

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxStates bounds the automaton built from the pointers. Wildcards next
// to literals multiply states; real configurations need a handful.
const maxStates = 4096

// Semantic is a compiled json_ignore or json_only rule: which members of a
// JSON body make its ETag. It is immutable and safe to share; each body is
// hashed by a JSONHasher from NewHasher.
//
// The pointers are compiled into a deterministic automaton whose states
// are sets of pointer prefixes, so that walking the body is one map lookup
// per member name on the way to a listed member, with wildcards already
// merged in.
type Semantic struct {
	only   bool
	states []matchState
	maxLit int // the longest literal segment, in bytes
	keyMax int // 6*maxLit + 6: see keyLimit
}

type matchState struct {
	// selected: this location is listed (left out with json_ignore, kept
	// whole with json_only); nothing below it is looked at.
	selected bool
	lits     []literal // next state by member name or decimal index
	other    int32     // next state for any other name or index; dead when -1
}

// literal is a transition on one name. A handful per state is usual, and
// comparing lengths first rejects most names without reading them, which
// beats hashing every name for a map.
type literal struct {
	name string
	next int32
}

const dead = -1

// NewSemantic compiles the json_ignore pointers (ignore) or the json_only
// pointers (only); at most one of the lists may be non-empty. With neither,
// the ETag is that of the body's JSON tokens without insignificant
// whitespace.
func NewSemantic(ignore, only []Pointer) (*Semantic, error) {
	if len(ignore) > 0 && len(only) > 0 {
		return nil, errors.New("json_ignore and json_only exclude each other: list the members to leave out, or those to keep, not both")
	}
	s := &Semantic{only: len(only) > 0}
	ptrs := ignore
	if s.only {
		ptrs = only
	}
	root := &trieNode{}
	for _, p := range ptrs {
		if len(p) == 0 {
			return nil, errors.New("the empty pointer names the whole body; name members, such as /generated_at")
		}
		root.insert(p)
		for _, seg := range p {
			s.maxLit = max(s.maxLit, len(seg))
		}
	}
	s.keyMax = 6*s.maxLit + 6
	if len(ptrs) == 0 {
		return s, nil
	}
	if err := s.build(root); err != nil {
		return nil, err
	}
	return s, nil
}

// Only reports whether s keeps the listed members (json_only) rather than
// leaving them out.
func (s *Semantic) Only() bool { return s.only }

type trieNode struct {
	id       int
	selected bool
	lits     map[string]*trieNode
	wild     *trieNode
}

func (n *trieNode) insert(p Pointer) {
	for _, seg := range p {
		if seg == Wildcard {
			if n.wild == nil {
				n.wild = &trieNode{}
			}
			n = n.wild
			continue
		}
		if n.lits == nil {
			n.lits = map[string]*trieNode{}
		}
		c := n.lits[seg]
		if c == nil {
			c = &trieNode{}
			n.lits[seg] = c
		}
		n = c
	}
	n.selected = true
}

// build runs the subset construction from the trie's root.
func (s *Semantic) build(root *trieNode) error {
	ids := 0
	var number func(n *trieNode)
	number = func(n *trieNode) {
		n.id = ids
		ids++
		for _, c := range n.lits {
			number(c)
		}
		if n.wild != nil {
			number(n.wild)
		}
	}
	number(root)

	index := map[string]int32{}
	var queue [][]*trieNode
	intern := func(set []*trieNode) (int32, error) {
		if len(set) == 0 {
			return dead, nil
		}
		slices.SortFunc(set, func(a, b *trieNode) int { return a.id - b.id })
		set = slices.CompactFunc(set, func(a, b *trieNode) bool { return a == b })
		var key strings.Builder
		for _, n := range set {
			key.WriteString(strconv.Itoa(n.id))
			key.WriteByte(',')
		}
		if id, ok := index[key.String()]; ok {
			return id, nil
		}
		if len(s.states) == maxStates {
			return 0, fmt.Errorf("the pointers need more than %d matching states; list fewer, or fewer wildcards", maxStates)
		}
		id := int32(len(s.states))
		index[key.String()] = id
		s.states = append(s.states, matchState{other: dead})
		queue = append(queue, set)
		return id, nil
	}
	if _, err := intern([]*trieNode{root}); err != nil {
		return err
	}
	for id := 0; id < len(queue); id++ {
		set := queue[id]
		st := matchState{other: dead}
		for _, n := range set {
			st.selected = st.selected || n.selected
		}
		if !st.selected {
			var err error
			if st, err = s.transitions(set, intern); err != nil {
				return err
			}
		}
		s.states[id] = st
	}
	return nil
}

// transitions computes where a state goes on each literal its pointers
// name, and on anything else.
func (s *Semantic) transitions(set []*trieNode, intern func([]*trieNode) (int32, error)) (matchState, error) {
	st := matchState{other: dead}
	var wilds []*trieNode
	for _, n := range set {
		if n.wild != nil {
			wilds = append(wilds, n.wild)
		}
	}
	var err error
	if st.other, err = intern(slices.Clone(wilds)); err != nil {
		return st, err
	}
	seen := map[string]bool{}
	for _, n := range set {
		for lit := range n.lits {
			if seen[lit] {
				continue
			}
			seen[lit] = true
			next := slices.Clone(wilds)
			for _, m := range set {
				if c := m.lits[lit]; c != nil {
					next = append(next, c)
				}
			}
			id, err := intern(next)
			if err != nil {
				return st, err
			}
			st.lits = append(st.lits, literal{name: lit, next: id})
		}
	}
	return st, nil
}

// member returns the state reached from state through the member name.
func (s *Semantic) member(state int32, name []byte) int32 {
	st := &s.states[state]
	for _, l := range st.lits {
		if len(l.name) == len(name) && l.name == string(name) {
			return l.next
		}
	}
	return st.other
}

// element returns the state reached from state through array index i.
func (s *Semantic) element(state int32, i int) int32 {
	st := &s.states[state]
	if len(st.lits) > 0 {
		var buf [20]byte
		return s.member(state, strconv.AppendInt(buf[:0], int64(i), 10))
	}
	return st.other
}

// NewHasher returns a JSONHasher for bodies under s, hashing with a.
func (s *Semantic) NewHasher(a Algorithm) *JSONHasher {
	var whole Hasher
	if s.only {
		whole = a.New()
	}
	return s.newHasher(a.New(), whole)
}

func (s *Semantic) newHasher(out, whole Hasher) *JSONHasher {
	h := &JSONHasher{s: s, out: sink{h: out, buf: make([]byte, 0, 2*sinkSize)}}
	if s.only {
		h.whole = sink{h: whole, buf: make([]byte, 0, 2*sinkSize)}
	}
	h.Reset()
	return h
}
