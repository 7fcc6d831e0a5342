//go:build linux

package notifier

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// inotify mask for every watched directory. IN_ACCESS is included only
// because `touch -a` (an atime-only utimes) is reported as an access, not
// as an attribute change.
const watchMask = unix.IN_ACCESS | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_EXCL_UNLINK | unix.IN_ONLYDIR

// inotifyEvent is one decoded struct inotify_event.
type inotifyEvent struct {
	wd     int32
	mask   uint32
	cookie uint32
	name   string
	at     int64 // when it was read, in nanoseconds since the epoch
}

// queueOverflow is what the reader queues when the kernel (IN_Q_OVERFLOW)
// or its own backlog dropped events.
var queueOverflow = inotifyEvent{wd: -1, mask: unix.IN_Q_OVERFLOW}

// inotifyFile is one inotify instance, and the eventfd that ends the
// reader's wait for it. The reader waits with poll(2) itself: in Go's
// poller the descriptor is edge-triggered, and every event queued while
// the reader rests would wake the poller's thread.
type inotifyFile struct {
	fd   int // nonblocking
	wake int // eventfd, written by interrupt
}

func newInotify() (*inotifyFile, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &inotifyFile{fd: fd, wake: wake}, nil
}

// wait blocks until there are events to read (true) or interrupt was
// called (false).
func (f *inotifyFile) wait() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}, {Fd: int32(f.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, err
		}
		return fds[1].Revents == 0, nil
	}
}

// interrupt ends the current wait and every later one.
func (f *inotifyFile) interrupt() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(f.wake, one[:])
}

// close drops every watch with the instance. The reader must have
// returned.
func (f *inotifyFile) close() error {
	return errors.Join(unix.Close(f.fd), unix.Close(f.wake))
}

// decodeEvents appends the events in buf, read at at, to out.
func decodeEvents(buf []byte, at int64, out []inotifyEvent) []inotifyEvent {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := inotifyEvent{
			wd:     int32(binary.NativeEndian.Uint32(buf[off:])),
			mask:   binary.NativeEndian.Uint32(buf[off+4:]),
			cookie: binary.NativeEndian.Uint32(buf[off+8:]),
			at:     at,
		}
		l := int(binary.NativeEndian.Uint32(buf[off+12:]))
		start := off + unix.SizeofInotifyEvent
		if start+l > len(buf) {
			break
		}
		if l > 0 {
			ev.name = strings.TrimRight(string(buf[start:start+l]), "\x00")
		}
		out = append(out, ev)
		off = start + l
	}
	return out
}

// read drains the inotify descriptor into the backlog until Close.
func (n *Notifier) read() {
	defer n.loopDone.Done()
	buf := make([]byte, 64*1024)
	var evs []inotifyEvent
	rest := time.NewTimer(time.Hour)
	defer rest.Stop()
	for {
		k, err := unix.Read(n.in.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			ok, err := n.in.wait()
			if err != nil {
				n.log.Error("waiting for inotify events", zap.Error(err))
			}
			if !ok {
				return
			}
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			n.log.Error("reading inotify events", zap.Error(err))
			return
		}
		evs = decodeEvents(buf[:k], time.Now().UnixNano(), evs[:0])
		n.backlogMu.Lock()
		if len(n.backlog)+len(evs) > maxBacklog {
			if !n.dropped {
				n.backlog = append(n.backlog, queueOverflow)
				n.dropped = true
			}
		} else {
			n.dropped = false
			n.backlog = append(n.backlog, evs...)
		}
		n.backlogMu.Unlock()
		n.wakeLoop()
		rest.Reset(n.gather)
		select {
		case <-n.stop:
			return
		case <-rest.C:
		}
	}
}
