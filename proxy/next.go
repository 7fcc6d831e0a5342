package proxy

import (
	"net/http"

	"github.com/etaggate/etaggate/hashing"
)

// callNext runs the rest of the route, recovering the abort that a stopped
// body provokes in reverse_proxy.
func callNext(bw *bodyWriter, r *http.Request, next Handler) (err error) {
	defer func() {
		if bw.stopped {
			if rec := recover(); rec != nil && rec != http.ErrAbortHandler {
				panic(rec)
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
		bufs:    &m.bufs,
		hasher:  m.hashers.Get().(hashing.Hasher),
	}
	bw.hasher.Reset()
	return bw
}

func (m *Middleware) releaseWriter(bw *bodyWriter) {
	if bw.buf != nil {
		m.bufs.put(bw.buf)
	}
	m.hashers.Put(bw.hasher)
	*bw = bodyWriter{}
	m.writers.Put(bw)
}
