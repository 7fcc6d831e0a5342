package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/etaggate/etaggate/hashing"
)

// errStop is returned from Write to make the rest of the route stop sending
// a body this gateway has no more use for. Caddy's reverse_proxy answers it
// by panicking with http.ErrAbortHandler, which callNext recovers.
var errStop = errors.New("etag: response body not needed")

type mode uint8

const (
	modeUndecided mode = iota
	modeBuffer         // 200 being buffered and hashed
	modePass           // streamed to the client as it comes
	modeStop           // the body is not wanted: Write returns errStop
)

// bodyWriter sits between the rest of the route and the client. It buffers
// and hashes a 200 response up to maxBody, and passes everything else
// through at the upstream's pace.
//
// With client == nil it is an internal recorder: nothing reaches a client,
// the headers land in its own map, and any 2xx is hashed.
type bodyWriter struct {
	client  http.ResponseWriter
	header  http.Header
	headReq bool // the client asked HEAD: never send it a body
	maxBody int64

	status  int
	mode    mode
	tooBig  bool // a buffered body outgrew maxBody
	stopped bool // errStop was returned
	wrote   bool // headers went to the client

	bodies  *spooler
	body    spool // started once the response is known to be buffered
	hasher  hashing.Hasher
	json    *hashing.JSONHasher // with json_ignore or json_only
	jsonOn  bool                // the body being buffered is declared JSON: json hashes it instead of hasher
	jsonBad bool                // it was not JSON after all: hasher has its bytes now
	tagBuf  [80]byte            // room for a quoted base64 SHA-256 or BLAKE3 tag
}

func (w *bodyWriter) Header() http.Header { return w.header }

func (w *bodyWriter) WriteHeader(code int) {
	if w.mode != modeUndecided {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if w.client != nil {
			w.client.WriteHeader(code) // 103 Early Hints and friends
		}
		return
	}
	w.status = code
	hashable := code == http.StatusOK || (w.client == nil && code >= 200 && code < 300)
	if n := declaredLength(w.header); hashable && !isStream(w.header) && n <= w.maxBody {
		w.mode = modeBuffer
		w.body.start(w.bodies, n)
		w.jsonOn = w.json != nil && isJSON(w.header)
		return
	}
	w.pass()
}

// pass commits to streaming: headers go out now, without an ETag.
func (w *bodyWriter) pass() {
	switch {
	case w.client == nil:
		w.mode = modeStop
	case w.headReq:
		w.mode = modeStop
		w.sendHeader(w.status)
	default:
		w.mode = modePass
		w.sendHeader(w.status)
	}
}

func (w *bodyWriter) sendHeader(code int) {
	w.wrote = true
	w.client.WriteHeader(code)
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	if w.mode == modeUndecided {
		w.WriteHeader(http.StatusOK)
	}
	switch w.mode {
	case modeBuffer:
		if w.body.Len()+int64(len(p)) > w.maxBody {
			w.tooBig = true
			w.pass()
			if w.mode == modePass {
				_, err := w.body.WriteTo(w.client)
				w.body.release()
				if err != nil {
					return 0, err
				}
				return w.client.Write(p)
			}
			w.stopped = true
			return 0, errStop
		}
		if _, err := w.body.Write(p); err != nil {
			return 0, err
		}
		if w.jsonOn {
			_, _ = w.json.Write(p) // the bytes are hashed only if it is not JSON
		} else {
			_, _ = w.hasher.Write(p)
		}
		return len(p), nil
	case modePass:
		return w.client.Write(p)
	default:
		w.stopped = true
		return 0, errStop
	}
}

// Flush is a no-op while buffering: the whole point is to hold the body
// until its ETag is known.
func (w *bodyWriter) Flush() {
	_ = w.FlushError()
}

func (w *bodyWriter) FlushError() error {
	if w.mode != modePass {
		return nil
	}
	return http.NewResponseController(w.client).Flush()
}

// Hijack serves protocol upgrades, which always pass through.
func (w *bodyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.client == nil || w.mode == modeBuffer {
		return nil, nil, http.ErrNotSupported
	}
	w.mode = modePass
	w.wrote = true
	return http.NewResponseController(w.client).Hijack()
}

// Unwrap gives http.ResponseController the client's writer for deadlines
// and full duplex.
func (w *bodyWriter) Unwrap() http.ResponseWriter { return w.client }

// buffered reports whether the whole body was buffered and hashed.
func (w *bodyWriter) buffered() bool { return w.mode == modeBuffer }

const eventStream = "text/event-stream"

// isStream reports whether a response must never be buffered.
func isStream(h http.Header) bool {
	if ct := strings.TrimLeft(first(h, "Content-Type"), " \t"); len(ct) >= len(eventStream) && strings.EqualFold(ct[:len(eventStream)], eventStream) {
		if rest := ct[len(eventStream):]; rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t' {
			return true
		}
	}
	return first(h, "Upgrade") != ""
}

func declaredLength(h http.Header) int64 {
	cl := first(h, "Content-Length")
	if cl == "" {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// exposeETag lets browser code read the ETag of a CORS response.
func exposeETag(h http.Header) {
	if first(h, "Access-Control-Allow-Origin") == "" {
		return
	}
	for _, v := range h["Access-Control-Expose-Headers"] {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "*" || strings.EqualFold(name, "ETag") {
				return
			}
		}
	}
	h.Add("Access-Control-Expose-Headers", "ETag")
}
