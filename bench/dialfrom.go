package main

import (
	"bufio"
	"net"
	"time"
)

// subscribersPerSource is how many connections to one gateway port the
// harness opens from one loopback source address: the ephemeral port range
// (32768–60999 by default) holds fewer than 30,000.
const subscribersPerSource = 20000

// dialRawFrom is dialRaw from source address 127.0.0.<2 + i/subscribersPerSource>,
// so that more subscribers than one address has ephemeral ports can connect.
func dialRawFrom(addr string, bufSize, i int) (*rawConn, error) {
	d := net.Dialer{
		Timeout:   5 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/subscribersPerSource))},
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, bufSize)}, nil
}
