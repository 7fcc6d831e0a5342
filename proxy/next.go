package proxy

import (
	"errors"
	"net/http"

	"github.com/etaggate/etaggate/hashing"
)

// errAborted is what callNext returns when the rest of the route aborted
// its response: reverse_proxy (like httputil.ReverseProxy) panics with
// http.ErrAbortHandler when the upstream's body breaks off. What was
// received of that response is incomplete and must not be used.
var errAborted = errors.New("the upstream's response broke off before its end")

// callNext runs the rest of the route into bw. The abort that a broken
// upstream body provokes is recovered into errAborted, and the one that a
// body stopped by bw provokes into nil, so that no abort reaches the
// client's connection unless the caller decides so.
func callNext(bw *bodyWriter, r *http.Request, next Handler) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			if rec != http.ErrAbortHandler {
				panic(rec)
			}
			if !bw.stopped {
				err = errAborted
			}
		}
	}()
	return next.ServeHTTP(bw, r)
}

func (m *Middleware) newWriter(client http.ResponseWriter, header http.Header, head bool) *bodyWriter {
	bw := m.writers.Get().(*bodyWriter)
	*bw = bodyWriter{
		client:  client,
		header:  header,
		headReq: head,
		maxBody: m.cfg.MaxBody,
		bodies:  &m.bodies,
		hasher:  m.hashers.Get().(hashing.Hasher),
		json:    m.newJSONHasher(),
	}
	bw.hasher.Reset()
	return bw
}

func (m *Middleware) releaseWriter(bw *bodyWriter) {
	bw.body.release()
	m.hashers.Put(bw.hasher)
	m.releaseJSONHasher(bw.json)
	*bw = bodyWriter{}
	m.writers.Put(bw)
}
