package proxy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// spooler gives the bodies a Middleware holds their storage: pooled
// buffers while the handler's buffer_memory has room, temporary files once
// it has not. A client that reads slowly then costs disk, not memory, as
// with nginx's proxy_buffers and proxy_max_temp_file_size.
type spooler struct {
	pool   bufferPool
	limit  int64        // buffer_memory
	memory atomic.Int64 // bytes of buffers held by bodies now
	disk   atomic.Int64 // bytes of bodies in temporary files now
	spills atomic.Uint64
	dir    spoolDir
}

// reserve takes n bytes of the memory budget, or reports that they are not
// there. Reservations racing near the limit may fail spuriously, which
// spills a body early but never exceeds the limit.
func (s *spooler) reserve(n int64) bool {
	if s.memory.Add(n) > s.limit {
		s.memory.Add(-n)
		return false
	}
	return true
}

// spoolDir is a Middleware's directory of temporary files, created below
// parent on first use. Close removes it with what is in it; requests still
// under way then (Caddy cleans a configuration up without waiting for its
// requests) get a new directory, removed with their last file.
type spoolDir struct {
	parent string
	mu     sync.Mutex
	path   string
	open   int // files created and not yet done
	closed bool
}

// create opens a new temporary file, readable and writable by this process
// only (os.CreateTemp makes it 0600). Its owner calls done once it has
// removed it.
func (d *spoolDir) create() (*os.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.path == "" {
		p, err := os.MkdirTemp(d.parent, "etaggate-")
		if err != nil {
			return nil, fmt.Errorf("creating a directory for bodies over buffer_memory in %s (set TMPDIR to a writable directory): %w", d.parent, err)
		}
		d.path = p
	}
	f, err := os.CreateTemp(d.path, "body-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file for a body over buffer_memory: %w", err)
	}
	d.open++
	return f, nil
}

// done counts a file removed; after Close, the last one takes the
// directory with it.
func (d *spoolDir) done() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open--
	if d.closed && d.open == 0 && d.path != "" {
		_ = os.RemoveAll(d.path)
		d.path = ""
	}
}

// remove deletes the directory and any file still in it. Files still open
// stay readable until closed, as Unix unlinking allows.
func (d *spoolDir) remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.path == "" {
		return nil
	}
	err := os.RemoveAll(d.path)
	d.path = ""
	return err
}

// spool holds one body: in a buffer accounted against the spooler's budget
// while it fits, else in a temporary file, which release removes.
type spool struct {
	s        *spooler
	buf      *bytes.Buffer
	reserved int64 // bytes of the budget that buf holds
	file     *os.File
	size     int64
	onDisk   int64 // bytes written to file
	memLimit int64 // largest buffer this body may have; 0: no limit but the budget
}

// start prepares a spool for a body of about hint bytes (0: unknown).
func (sp *spool) start(s *spooler, hint int64) {
	*sp = spool{s: s}
	if c := capFor(hint); s.reserve(c) {
		sp.buf = s.pool.get(hint)
		sp.reserved = c
	}
}

// Len returns the bytes written so far.
func (sp *spool) Len() int64 { return sp.size }

func (sp *spool) Write(p []byte) (int, error) {
	if sp.file == nil && (sp.buf == nil || sp.buf.Available() < len(p)) && !sp.grow(len(p)) {
		if err := sp.spill(); err != nil {
			return 0, err
		}
	}
	if sp.file != nil {
		n, err := sp.file.Write(p)
		sp.size += int64(n)
		sp.addDisk(n)
		return n, err
	}
	sp.buf.Write(p)
	sp.size += int64(len(p))
	return len(p), nil
}

// grow moves the body into a buffer with room for n more bytes, if the
// budget allows. Buffers are replaced rather than grown by bytes.Buffer so
// that their capacity, and with it what is reserved, stays a pool class.
func (sp *spool) grow(n int) bool {
	if sp.buf == nil {
		return false
	}
	want := sp.size + int64(n)
	if want > 1<<maxBufferClass {
		want = max(want, 2*sp.reserved) // past the pooled classes, double
	}
	c := capFor(want)
	if (sp.memLimit > 0 && c > sp.memLimit) || !sp.s.reserve(c-sp.reserved) {
		return false
	}
	nb := sp.s.pool.get(want)
	nb.Write(sp.buf.Bytes())
	sp.s.pool.put(sp.buf)
	sp.buf, sp.reserved = nb, c
	return true
}

// spill moves the body to a temporary file, where the rest of it goes too.
func (sp *spool) spill() error {
	f, err := sp.s.dir.create()
	if err != nil {
		return err
	}
	sp.s.spills.Add(1)
	if sp.buf != nil {
		n, err := f.Write(sp.buf.Bytes())
		sp.addDisk(n)
		sp.freeBuffer()
		if err != nil {
			sp.file = f
			return fmt.Errorf("writing a temporary file: %w", err)
		}
	}
	sp.file = f
	return nil
}

// WriteTo copies the whole body to w. From a file it hands w the *os.File
// itself, so that net/http can sendfile it.
func (sp *spool) WriteTo(w io.Writer) (int64, error) {
	if sp.file == nil {
		if sp.buf == nil {
			return 0, nil
		}
		n, err := w.Write(sp.buf.Bytes())
		return int64(n), err
	}
	if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, sp.file)
}

// ReadAt reads the body as written so far.
func (sp *spool) ReadAt(p []byte, off int64) (int, error) {
	if off >= sp.size {
		return 0, io.EOF
	}
	if sp.file != nil {
		n, err := sp.file.ReadAt(p[:min(int64(len(p)), sp.size-off)], off)
		if err == nil && off+int64(n) == sp.size {
			err = io.EOF
		}
		return n, err
	}
	n := copy(p, sp.buf.Bytes()[off:])
	if off+int64(n) == sp.size {
		return n, io.EOF
	}
	return n, nil
}

// release gives the buffer back to the budget and the pool, or removes the
// file. The spool is empty afterwards and may be started again.
func (sp *spool) release() {
	if sp.s == nil {
		return
	}
	sp.freeBuffer()
	if sp.file != nil {
		name := sp.file.Name()
		_ = sp.file.Close()
		_ = os.Remove(name)
		sp.s.dir.done()
		sp.s.disk.Add(-sp.onDisk)
		sp.file, sp.onDisk = nil, 0
	}
	sp.size = 0
}

func (sp *spool) addDisk(n int) {
	sp.onDisk += int64(n)
	sp.s.disk.Add(int64(n))
}

func (sp *spool) freeBuffer() {
	if sp.buf != nil {
		sp.s.pool.put(sp.buf)
		sp.buf = nil
	}
	sp.s.memory.Add(-sp.reserved)
	sp.reserved = 0
}
