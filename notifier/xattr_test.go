//go:build linux

package notifier

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The *at system calls and the /proc path read the same attributes.
func TestXattrsAtAndThroughProc(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if unix.Setxattr(f, "user.a", []byte("1"), 0) != nil || unix.Setxattr(f, "user.long", make([]byte, 1000), 0) != nil {
		t.Skip("no user xattrs here")
	}
	if unix.Setxattr(f, "system.posix_acl_access", aclXattr(), 0) != nil {
		t.Log("no POSIX ACLs here")
	}
	fd, err := unix.Open(dir, pathDirFlags|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, name := range []string{"f", "link", "missing"} {
		at := xattrs{dirfd: fd, name: name}
		proc := xattrs{dirfd: fd, name: name, proc: true, path: fdPath(fd) + "/" + name}
		o1, a1 := xattrDigests(at)
		o2, a2 := xattrDigests(proc)
		if o1 != o2 || a1 != a2 {
			t.Errorf("%s: *at digests %x %x, /proc %x %x", name, o1, a1, o2, a2)
		}
		if name == "f" && o1 == 0 {
			t.Errorf("%s: no digest of its attributes", name)
		}
	}
}
