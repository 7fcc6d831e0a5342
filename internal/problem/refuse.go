package problem

import (
	"net/http"

	"go.uber.org/zap"
)

// Refuse answers r with d (or hands it to route, see Answer) and logs the
// refusal with the request's fields: at error for a 5xx, the gateway's
// fault, else at info, the client's.
func Refuse(log *zap.Logger, msg string, w http.ResponseWriter, r *http.Request, d *Details, route Router, cause error) error {
	routed := Answer(w, r, d, route)
	at := log.Info
	if d.Status >= 500 {
		at = log.Error
	}
	at(msg,
		zap.Int("status", d.Status),
		zap.String("detail", d.Detail),
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("uri", r.RequestURI),
		zap.String("remote_addr", r.RemoteAddr),
		zap.NamedError("cause", cause))
	return routed
}
