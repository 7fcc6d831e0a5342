package feed

import (
	"slices"
	"strconv"
	"strings"

	"github.com/etaggate/etaggate/sse"
)

// source is the feed as the hub sees it: every change has one scope key,
// and topics tell paths apart by prefix.
type source struct{}

func (source) Scope(keys []string, _ *Change) []string { return append(keys, "") }

func (source) Left(sse.Topic[Change]) {}

// topic is a stream's set of path prefixes, encoded as one string so that
// it is comparable and streams with the same set share a view: each
// prefix as its length, a colon and itself. The empty set is every path.
type topic struct{ prefixes string }

// newTopic normalises a request's prefixes: sorted, without those that
// another one covers, so that equal sets give equal topics. An empty
// prefix covers every path.
func newTopic(prefixes []string) topic {
	ps := slices.Clone(prefixes)
	slices.Sort(ps)
	var b strings.Builder
	last, have := "", false
	for _, p := range ps {
		if p == "" {
			return topic{}
		}
		if have && strings.HasPrefix(p, last) {
			continue
		}
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
		last, have = p, true
	}
	return topic{b.String()}
}

func (topic) Key() string { return "" }

func (t topic) Match(c *Change, _ int) bool {
	if t.prefixes == "" {
		return true
	}
	for rest := t.prefixes; rest != ""; {
		colon := strings.IndexByte(rest, ':')
		n, _ := strconv.Atoi(rest[:colon]) // written by newTopic
		p := rest[colon+1 : colon+1+n]
		if strings.HasPrefix(c.Path, p) {
			return true
		}
		rest = rest[colon+1+n:]
	}
	return false
}

// AppendJSON writes {"type","path","etag","method"}, etag null when unknown.
func (topic) AppendJSON(b []byte, c *Change, _ int) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, c.Type...)
	b = append(b, `","path":`...)
	b = sse.AppendJSONString(b, []byte(c.Path))
	b = append(b, `,"etag":`...)
	if c.ETag == "" {
		b = append(b, "null"...)
	} else {
		b = sse.AppendJSONString(b, []byte(c.ETag))
	}
	b = append(b, `,"method":`...)
	b = sse.AppendJSONString(b, []byte(c.Method))
	return append(b, '}')
}
