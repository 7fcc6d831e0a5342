package proxy

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/etaggate/etaggate/internal/problem"
)

// overrideFields are the method-override fields that many legacy
// frameworks honour: a POST carrying "X-HTTP-Method-Override: DELETE" is a
// DELETE to them, so it is one to this gateway too. Name is how the field
// is spelt in messages; the map key is its canonical form.
var overrideFields = [...]struct{ key, name string }{
	{"X-Http-Method-Override", "X-HTTP-Method-Override"},
	{"X-Http-Method", "X-HTTP-Method"},
	{"X-Method-Override", "X-Method-Override"},
}

// overrideError is a request whose method-override fields disagree, which
// would leave the upstream to pick one.
type overrideError struct {
	field        string // the field that disagrees with an earlier one
	first, other string
	firstField   string
}

func (e *overrideError) Error() string {
	return fmt.Sprintf("%s names %s but %s names %s; send one method override, or none",
		e.firstField, problem.Clip(e.first), e.field, problem.Clip(e.other))
}

// writeMethod returns the method whose rules apply to r: the enforced
// method an override field names, else r's own. An upstream that honours
// the override acts as the named method, so that is what is enforced,
// locked and checked; the request still goes upstream as it was sent.
func (m *Middleware) writeMethod(r *http.Request) (string, error) {
	named, from := "", ""
	for _, f := range overrideFields {
		for _, v := range r.Header[f.key] {
			if !m.enforced[v] {
				v = strings.ToUpper(strings.TrimSpace(v))
			}
			if named != "" && v != named {
				return "", &overrideError{field: f.name, first: named, other: v, firstField: from}
			}
			named, from = v, f.name
		}
	}
	if named != "" && m.enforced[named] {
		return named, nil
	}
	return r.Method, nil
}
