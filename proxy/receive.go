package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// receivedBody is a write's body read before the lock was taken, so that a
// client sending slowly holds no lock: up to max_body, in memory within
// buffer_memory or else in a temporary file. A longer body is received as
// far as max_body; the rest streams from the client under the lock.
type receivedBody struct {
	mu       sync.Mutex
	sp       spool
	off      int64
	released bool
	rest     io.Reader // the client's body past max_body; nil when whole
}

// unknownLengthMemory is the most memory a write's body of unknown length
// takes; the rest of it goes to a temporary file.
const unknownLengthMemory = 1 << 20

var errBodyReleased = errors.New("etag: the write's body was released")

// receive reads r's body into a receivedBody. It returns nil, true when
// there is nothing to receive or the body is declared longer than
// max_body (it streams under the lock); ok is false when the write was
// answered or dropped, and err is then what the answer returns (see refuse).
func (m *Middleware) receive(w http.ResponseWriter, r *http.Request) (rb *receivedBody, ok bool, err error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.ContentLength > m.cfg.MaxBody {
		return nil, true, nil
	}
	rb = &receivedBody{}
	rb.sp.start(&m.bodies, max(r.ContentLength, 0))
	if r.ContentLength < 0 {
		// Of unknown length, it may be far longer than max_body: like
		// nginx's client_body_buffer_size, keep only its start in memory.
		rb.sp.memLimit = unknownLengthMemory
	}
	buf := m.bodies.pool.get(32 << 10)
	defer m.bodies.pool.put(buf)
	p := buf.AvailableBuffer()[:buf.Cap()]
	for rb.sp.Len() <= m.cfg.MaxBody {
		n, err := r.Body.Read(p[:min(int64(len(p)), m.cfg.MaxBody+1-rb.sp.Len())])
		if n > 0 {
			if _, werr := rb.sp.Write(p[:n]); werr != nil {
				rb.release()
				m.log.Error("cannot store a write's body; write not forwarded", requestFields(r, zap.Error(werr))...)
				return nil, false, m.unavailable(w, r, "the gateway could not store the body of the "+r.Method+", so it was not forwarded; retry later")
			}
		}
		if err == io.EOF {
			return rb, true, nil
		}
		if err != nil {
			rb.release()
			return nil, false, m.bodyUnreadable(w, r, err)
		}
	}
	rb.rest = r.Body // longer than max_body: the rest streams under the lock
	return rb, true, nil
}

// bodyUnreadable answers a write whose body could not be read: one over a
// limit set in front of this handler gets 413; otherwise the client broke
// off, and there is no one to answer.
func (m *Middleware) bodyUnreadable(w http.ResponseWriter, r *http.Request, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return m.bodyTooLarge(w, r, mbe.Limit)
	}
	m.observe(ClientGone)
	m.log.Debug("client broke off sending the body; write dropped, not forwarded", requestFields(r, zap.Error(err))...)
	return nil
}

// forward makes fwd send the received body, with its length when whole.
// An Expect: 100-continue was met by receiving it, so it goes no further.
func (rb *receivedBody) forward(fwd *http.Request) {
	if rb.rest != nil {
		fwd.Body = io.NopCloser(io.MultiReader(rb, rb.rest))
		return
	}
	fwd.Body = rb
	delete(fwd.Header, "Expect")
	fwd.ContentLength = rb.sp.Len()
	fwd.TransferEncoding = nil
}

// Read reads the received part. The transport may still be reading when
// the write's response has come back and the body is released: it then
// gets an error, never a recycled buffer.
func (rb *receivedBody) Read(p []byte) (int, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.released {
		return 0, errBodyReleased
	}
	n, err := rb.sp.ReadAt(p, rb.off)
	rb.off += int64(n)
	return n, err
}

// Close does nothing: release frees the body once the write is done.
func (rb *receivedBody) Close() error { return nil }

// release frees the memory or removes the temporary file.
func (rb *receivedBody) release() {
	if rb == nil {
		return
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.released = true
	rb.sp.release()
}

// expectsContinue reports whether the client waits for 100 Continue before
// it sends the body, so that refusing the write first spares the upload.
func expectsContinue(r *http.Request) bool {
	return r.ContentLength != 0 && r.ProtoAtLeast(1, 1) && strings.Contains(strings.ToLower(r.Header.Get("Expect")), "100-continue")
}
