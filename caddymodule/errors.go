package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/etaggate/etaggate/internal/problem"
)

// routeError is the problem.Router of both modules' engines: when the
// server the request arrived on has error routes that apply to it (a site's
// handle_errors), it returns the refusal as a caddyhttp.Error with its
// status, for those routes to render ({err.status_code}, {err.message});
// otherwise nil, and the module writes its problem document.
//
// Only the error routes' own matchers decide, as the server would: with
// several sites on one server, a site without handle_errors keeps its
// problem documents.
func routeError(r *http.Request, status int, err error) error {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.Errors == nil {
		return nil
	}
	for _, route := range srv.Errors.Routes {
		if route.MatcherSets.AnyMatch(r) {
			return caddyhttp.Error(status, err)
		}
	}
	return nil
}

var _ problem.Router = routeError
