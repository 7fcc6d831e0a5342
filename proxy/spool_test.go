package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// spoolFiles lists the regular files below dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func randomBody(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	_, _ = r.Read(b)
	return b
}

// readSpool reads sp back both ways a caller does: WriteTo and ReadAt.
func readSpool(t *testing.T, sp *spool) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := sp.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	at, err := io.ReadAll(io.NewSectionReader(sp, 0, sp.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(at, out.Bytes()) {
		t.Fatal("ReadAt and WriteTo read different bodies")
	}
	return out.Bytes()
}

// TestSpoolBudget: bodies stay in memory while the budget has room and go
// to 0600 files once it has not, also in the middle of a body; every body
// reads back whole, and release returns the memory and removes the file.
func TestSpoolBudget(t *testing.T) {
	dir := t.TempDir()
	s := &spooler{limit: 64 << 10, dir: spoolDir{parent: dir}}
	defer func() { _ = s.dir.remove() }()

	small, big, grown := randomBody(20<<10), randomBody(100<<10), randomBody(60<<10)
	var a, b, c spool
	a.start(s, int64(len(small))) // 32 KiB class: fits
	b.start(s, int64(len(big)))   // 128 KiB class: over the budget
	c.start(s, 0)                 // unknown length: 4 KiB, then grows past the budget
	for _, w := range []struct {
		sp   *spool
		body []byte
	}{{&a, small}, {&b, big}, {&c, grown}} {
		for p := w.body; len(p) > 0; p = p[min(len(p), 1000):] {
			if _, err := w.sp.Write(p[:min(len(p), 1000)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a.file != nil || b.file == nil || c.file == nil {
		t.Fatalf("in files: small %v, big %v, grown %v; want only big and grown", a.file != nil, b.file != nil, c.file != nil)
	}
	if got := s.memory.Load(); got != 32<<10 {
		t.Errorf("memory %d, want the small body's 32 KiB class", got)
	}
	if got, want := s.disk.Load(), int64(len(big)+len(grown)); got != want {
		t.Errorf("disk %d, want %d", got, want)
	}
	if got := s.spills.Load(); got != 2 {
		t.Errorf("spills %d, want 2", got)
	}
	files := spoolFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("files %v, want 2", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	for _, w := range []struct {
		sp   *spool
		body []byte
	}{{&a, small}, {&b, big}, {&c, grown}} {
		if !bytes.Equal(readSpool(t, w.sp), w.body) {
			t.Errorf("a body of %d bytes read back wrong", len(w.body))
		}
		w.sp.release()
	}
	if m, d := s.memory.Load(), s.disk.Load(); m != 0 || d != 0 {
		t.Errorf("after release: memory %d, disk %d; want 0 and 0", m, d)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Errorf("files left after release: %v", files)
	}
}

// TestSpoolDirRemovedAtClose: Close removes the handler's directory with
// any file still in it. A body still under way can go on: the file it had
// stays readable, and one it needs after Close is removed, directory and
// all, when it is released.
func TestSpoolDirRemovedAtClose(t *testing.T) {
	parent := t.TempDir()
	cfg := DefaultConfig()
	cfg.TempDir = parent
	cfg.BufferMemory = 1
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sp spool
	sp.start(&m.bodies, 10)
	if _, err := sp.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if n := len(spoolFiles(t, parent)); n != 1 {
		t.Fatalf("%d files, want 1", n)
	}
	m.Close()
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left after Close: %v", entries)
	}
	if got := string(readSpool(t, &sp)); got != "0123456789" {
		t.Errorf("a body spooled before Close reads %q after it", got)
	}
	var late spool
	late.start(&m.bodies, 10)
	if _, err := late.Write([]byte("late")); err != nil {
		t.Fatalf("a body under way after Close: %v", err)
	}
	sp.release()
	if n := len(spoolFiles(t, parent)); n != 1 {
		t.Fatalf("%d files while the late body is held, want 1", n)
	}
	late.release()
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left after the last body was released: %v", entries)
	}
}

// TestReadOverBudget: a body that does not fit buffer_memory is spooled
// and still tagged and served in full; nothing stays behind.
func TestReadOverBudget(t *testing.T) {
	parent := t.TempDir()
	cfg := DefaultConfig()
	cfg.TempDir = parent
	cfg.BufferMemory = 64 << 10
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, size := range []int{1 << 10, 1 << 20} {
		body := randomBody(size)
		rec := httptest.NewRecorder()
		if err := m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://api.example/doc", nil), benchUpstream(body)); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
			t.Fatalf("%d bytes: status %d, body of %d bytes equal: %v", size, rec.Code, rec.Body.Len(), bytes.Equal(rec.Body.Bytes(), body))
		}
		if got, want := rec.Header().Get("ETag"), cfg.Hash.Sum(body); got != want {
			t.Errorf("%d bytes: ETag %s, want %s", size, got, want)
		}
	}
	st := m.Stats()
	if st.Spills != 1 || st.MemoryBytes != 0 || st.DiskBytes != 0 {
		t.Errorf("stats %+v, want 1 spill and nothing held", st)
	}
	if files := spoolFiles(t, parent); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}
