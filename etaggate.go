// Package etaggate registers etaggate's Caddy modules: importing it (as xcaddy
// does) adds http.handlers.etag and http.handlers.fs_notify to Caddy.
package etaggate

import (
	_ "github.com/etaggate/etaggate/caddymodule"
)
