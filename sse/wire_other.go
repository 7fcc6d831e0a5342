//go:build !linux

package sse

import (
	"net"
	"net/http"
)

// Streams are taken over from net/http only on Linux; elsewhere every
// stream is written by the goroutine serving its request.

type wires struct{}

type wire struct {
	conn             net.Conn
	busy, slow, ping bool
	closed           bool
}

func newWires(*core) (*wires, error) { return &wires{}, nil }

func (*wires) close()                               {}
func (*wires) streams() int                         { return 0 }
func (*wires) schedule(*Stream)                     {}
func (*wires) add(*Stream, net.Conn, bool)          {}
func takeOver(http.ResponseWriter) (net.Conn, bool) { return nil, false }
