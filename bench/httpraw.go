package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"time"
)

// rawConn is a minimal HTTP/1.1 keep-alive client connection. The load
// generator shares two cores with the gateway and the upstream, so it avoids
// net/http's client machinery: requests are prebuilt bytes and responses are
// parsed in place, without allocating per request.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

// response is what the load generator needs from a response head.
type response struct {
	status  int
	etag    string // set only when asked for
	length  int64  // Content-Length, -1 when absent
	chunked bool
	close   bool // the server will close the connection after this response
}

func dialRaw(addr string, bufSize int) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, bufSize)}, nil
}

func (rc *rawConn) Close() error { return rc.c.Close() }

// roundTrip writes req, reads the response head into r and discards the body.
// head reports whether req is a HEAD request (no body follows).
func (rc *rawConn) roundTrip(req []byte, r *response, wantETag, head bool) error {
	if _, err := rc.c.Write(req); err != nil {
		return err
	}
	if err := rc.readHead(r, wantETag); err != nil {
		return err
	}
	if head || r.status == 204 || r.status == 304 || r.status < 200 {
		return nil
	}
	switch {
	case r.chunked:
		if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(rc.br)); err != nil {
			return fmt.Errorf("reading chunked body: %w", err)
		}
	case r.length >= 0:
		if _, err := rc.br.Discard(int(r.length)); err != nil {
			return fmt.Errorf("reading body: %w", err)
		}
	default:
		// Delimited by the connection closing.
		if _, err := io.Copy(io.Discard, rc.br); err != nil {
			return err
		}
		r.close = true
	}
	return nil
}

var errMalformed = errors.New("malformed response head")

// readHead parses a status line and header block.
func (rc *rawConn) readHead(r *response, wantETag bool) error {
	*r = response{length: -1}
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	r.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.status < 100 || r.status > 599 {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	for {
		line, err = rc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			r.length = n
		case asciiEqualFold(name, "transfer-encoding"):
			r.chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			r.close = asciiEqualFold(value, "close")
		case wantETag && asciiEqualFold(name, "etag"):
			r.etag = string(value)
		}
	}
}

// bodyReader returns the decoded body of a response whose head was just read,
// for streams that are read incrementally (server-sent events).
func (rc *rawConn) bodyReader(r *response) io.Reader {
	switch {
	case r.chunked:
		return httputil.NewChunkedReader(rc.br)
	case r.length >= 0:
		return io.LimitReader(rc.br, r.length)
	default:
		return rc.br
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// buildRequest returns the bytes of one HTTP/1.1 request.
func buildRequest(method, host, path string, header [][2]string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: etaggate-bench\r\n", method, path, host)
	for _, h := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}
