package feed

import (
	"net/http"

	"github.com/etaggate/etaggate/proxy"
)

// The notification types of the feed.
const (
	Created = "resource_created" // a write answered 201
	Updated = "resource_updated" // any other 2xx of a POST, PUT or PATCH
	Removed = "resource_removed" // a DELETE answered 2xx
)

// Change is one write as the feed reports it.
type Change struct {
	Type   string
	Path   string // the URL path written, or a 201's Location path
	ETag   string // the new representation's ETag; "" when unknown (null)
	Method string
}

// Of maps a write the upstream answered 2xx to the change the feed
// reports, and reports false for a method the feed does not report.
//
// A 201 names the resource it created in Location (RFC 9110 §15.3.2), so
// its path is the one reported; the ETag the gateway read after the write
// is then that of the request's target, not of the created resource, and
// is left out unless both are the same path.
func Of(w proxy.Written) (Change, bool) {
	c := Change{Path: w.Request.URL.Path, ETag: w.ETag, Method: w.Method}
	switch w.Method {
	case http.MethodDelete:
		c.Type, c.ETag = Removed, ""
		return c, true
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return Change{}, false
	}
	c.Type = Updated
	if w.Status != http.StatusCreated {
		return c, true
	}
	c.Type = Created
	if loc := w.Header.Get("Location"); loc != "" {
		if u, err := w.Request.URL.Parse(loc); err == nil && u.Path != "" {
			if u.Path != c.Path {
				c.ETag = ""
			}
			c.Path = u.Path
		}
	}
	return c, true
}
