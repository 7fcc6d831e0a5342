package notifyclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

var errLineTooLong = errors.New("a line of the stream is longer than 16 MiB")

// event is one server-sent event (the WHATWG EventSource format).
type event struct {
	name  string // the event: field; "" is a plain message
	data  []byte // the data: lines joined with "\n"
	id    string
	hasID bool
}

// maxLine bounds a line of the stream, so that a server sending an
// endless line cannot make the client hold it all.
const maxLine = 16 << 20

// sseReader splits a stream into events, skipping comments and fields it
// does not know.
type sseReader struct {
	r    *bufio.Reader
	line []byte
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next event that has data, or the error that ended the
// stream (io.EOF for a clean end). An id field is remembered even on an
// event without data, as EventSource does.
func (s *sseReader) next() (event, error) {
	var ev event
	var data bytes.Buffer
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return event{}, err
		}
		if len(line) == 0 {
			if hasData {
				ev.data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				return ev, nil
			}
			if ev.hasID {
				return ev, nil // an id without data still moves Last-Event-ID
			}
			ev = event{}
			continue
		}
		if line[0] == ':' {
			continue // a comment: keepalives, ": watching", ": closing"
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.name = string(value)
		case "data":
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.id, ev.hasID = string(value), true
			}
		}
	}
}

// readLine returns the next line without its end, LF or CRLF. (A lone CR,
// which the format also allows, is not taken for a line end: no server of
// this project sends one.)
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > maxLine {
			return nil, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(s.line) > 0 {
				err = io.ErrUnexpectedEOF // a line cut off: the stream broke
			}
			return nil, err
		}
		line := bytes.TrimSuffix(s.line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}
