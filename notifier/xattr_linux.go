//go:build linux

package notifier

import (
	"errors"
	"hash/fnv"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xattrs reads the extended attributes of entry name of the directory
// open at dirfd, without following a final symlink: with listxattrat and
// getxattrat (Linux 6.13) where the kernel has them, else through the
// descriptor's /proc path, whose lookup costs several times that of the
// name alone.
type xattrs struct {
	dirfd int
	name  string
	proc  bool
	path  string // /proc/self/fd/<dirfd>/<name>, when proc
}

func entryXattrs(dirfd int, name string) xattrs {
	x := xattrs{dirfd: dirfd, name: name}
	if !haveXattrat() {
		x.proc, x.path = true, name
		if dirfd != unix.AT_FDCWD {
			x.path = fdPath(dirfd) + "/" + name
		}
	}
	return x
}

func (x xattrs) list(buf []byte) (int, error) {
	if x.proc {
		return unix.Llistxattr(x.path, buf)
	}
	return listxattrat(x.dirfd, x.name, buf)
}

func (x xattrs) get(attr string, buf []byte) (int, error) {
	if x.proc {
		return unix.Lgetxattr(x.path, attr, buf)
	}
	return getxattrat(x.dirfd, x.name, attr, buf)
}

// haveXattrat tells, once per process, whether the kernel has
// listxattrat and getxattrat, and lets us call them.
var haveXattrat = sync.OnceValue(func() bool {
	_, err := listxattrat(unix.AT_FDCWD, "/", nil)
	return !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM)
})

func listxattrat(dirfd int, name string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var b unsafe.Pointer
	if len(buf) > 0 {
		b = unsafe.Pointer(&buf[0])
	}
	r, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(b), uintptr(len(buf)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// xattrArgs is the kernel's struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func getxattrat(dirfd int, name, attr string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(buf))}
	if len(buf) > 0 {
		// Taken just before the call, which nothing can move buf across.
		args.value = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	r, _, errno := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

var xattrBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// xattrDigests hashes the names and values of x's extended attributes,
// the POSIX ACL ones (system.posix_acl_*) apart from the others, so a
// setfacl reads as an ACL change and a setfattr as an extra-attribute one.
// Errors (no xattr support, a file gone meanwhile) give zero digests.
func xattrDigests(x xattrs) (other, acl uint64) {
	bp := xattrBufs.Get().(*[]byte)
	defer xattrBufs.Put(bp)
	buf := *bp
	n, err := x.list(buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = x.list(nil); err != nil || n <= 0 {
			return 0, 0
		}
		buf = make([]byte, n+256)
		n, err = x.list(buf)
	}
	if err != nil || n <= 0 {
		return 0, 0
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	ho, ha := fnv.New64a(), fnv.New64a()
	val := make([]byte, 256)
	for _, name := range names {
		h := ho
		if strings.HasPrefix(name, "system.posix_acl_") {
			h = ha
		}
		vn, err := x.get(name, val)
		if errors.Is(err, unix.ERANGE) {
			if vn, err = x.get(name, nil); err == nil && vn > 0 {
				val = make([]byte, vn+64)
				vn, err = x.get(name, val)
			}
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		if err == nil && vn > 0 {
			h.Write(val[:vn])
		}
		h.Write([]byte{0xff})
	}
	// Sum64 of an empty FNV hash is the offset basis, not zero; keep "no
	// attributes" distinguishable from "some attributes" either way.
	if hasPrefix(names, "system.posix_acl_", false) {
		other = ho.Sum64()
	}
	if hasPrefix(names, "system.posix_acl_", true) {
		acl = ha.Sum64()
	}
	return other, acl
}

// hasPrefix reports whether some name has (want) or lacks (!want) prefix.
func hasPrefix(names []string, prefix string, want bool) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) == want {
			return true
		}
	}
	return false
}
