//go:build linux

package notifier

import (
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// snap is what the index remembers of one directory entry: enough to tell,
// after inotify says "something changed", which notification types apply.
type snap struct {
	dev, ino            uint64
	mode                uint32 // file type and permission bits
	uid, gid            uint32
	nlink               uint32
	size                int64
	atime, mtime, btime int64 // nanoseconds since the epoch; btime 0 when unknown
	ctime               int64
	xattrs              uint64 // digest of the extended attributes, ACLs excluded
	acl                 uint64 // digest of the POSIX ACL attributes
}

func (s *snap) isDir() bool { return s.mode&unix.S_IFMT == unix.S_IFDIR }

func nsec(t unix.StatxTimestamp) int64 { return t.Sec*1e9 + int64(t.Nsec) }

const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME

// statAt fills a snapshot of name relative to dirfd without following a
// final symlink. withXattrs also digests the extended attributes, which
// costs one or more further system calls.
func statAt(dirfd int, name string, withXattrs bool) (snap, error) {
	var st unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, statxMask, &st); err != nil {
		return snap{}, err
	}
	s := snap{
		dev:   unix.Mkdev(st.Dev_major, st.Dev_minor),
		ino:   st.Ino,
		mode:  uint32(st.Mode),
		uid:   st.Uid,
		gid:   st.Gid,
		nlink: st.Nlink,
		size:  int64(st.Size),
		atime: nsec(st.Atime),
		mtime: nsec(st.Mtime),
		ctime: nsec(st.Ctime),
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		s.btime = nsec(st.Btime)
	}
	if withXattrs {
		s.xattrs, s.acl = xattrDigests(entryXattrs(dirfd, name))
	}
	return s, nil
}

// fdPath names an open descriptor through /proc, so path-based calls (the
// xattr family, inotify_add_watch) reach exactly the object the descriptor
// holds, wherever it has been renamed to.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// haveOpenat2 tells, once per process, whether the kernel has openat2
// (Linux 5.6).
var haveOpenat2 = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	if err == nil {
		closeFD(fd)
	}
	return !errors.Is(err, unix.ENOSYS)
})

// openBeneath opens rel below dirfd refusing every symlink on the way, so a
// directory swapped for a symlink between a scan and a watch cannot lead
// the watcher outside root. flags are added to O_CLOEXEC|O_NOFOLLOW.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	if haveOpenat2() {
		return unix.Openat2(dirfd, rel, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
	}
	// Kernels before 5.6: walk component by component with O_NOFOLLOW.
	cur := dirfd
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			if cur != dirfd {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		f := unix.O_PATH | unix.O_DIRECTORY
		if i == len(parts)-1 {
			f = flags
		}
		next, err := unix.Openat(cur, p, f|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = next
	}
	if cur == dirfd {
		return unix.Openat(dirfd, ".", flags|unix.O_CLOEXEC, 0)
	}
	return cur, nil
}

// Flags of directories opened below root: to be listed, or only to anchor
// the *at calls of a batch of work (pathDirFlags), which is cheaper to
// open and close and tells no watcher of the directory about it.
const (
	openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY
	pathDirFlags = unix.O_PATH | unix.O_DIRECTORY
)

func closeFD(fd int) { _ = unix.Close(fd) }

// readDirNames lists the entries of the open directory dirfd (which stays
// open; a duplicate is read and closed).
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// walkInodes visits every entry below root (rel is "." for root itself),
// reading inode numbers and types straight from getdents, without a stat
// per entry. fn returns false to stop. Symlinks are not followed.
func walkInodes(rootFD int, fn func(rel string, ino uint64, isDir bool) bool) {
	stack := []string{"."}
	buf := make([]byte, 32*1024)
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fd, err := openBeneath(rootFD, dir, openDirFlags)
		if err != nil {
			continue
		}
		for {
			k, err := unix.Getdents(fd, buf)
			if err != nil || k <= 0 {
				break
			}
			for off := 0; off+19 <= k; {
				ino := binary.NativeEndian.Uint64(buf[off:])
				reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
				typ := buf[off+18]
				if reclen <= 0 || off+reclen > k {
					break
				}
				name := buf[off+19 : off+reclen]
				if i := slices.Index(name, 0); i >= 0 {
					name = name[:i]
				}
				off += reclen
				nm := string(name)
				if nm == "." || nm == ".." {
					continue
				}
				rel := nm
				if dir != "." {
					rel = dir + "/" + nm
				}
				isDir := typ == unix.DT_DIR
				if typ == unix.DT_UNKNOWN {
					var st unix.Stat_t
					isDir = unix.Fstatat(fd, nm, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
				}
				if !fn(rel, ino, isDir) {
					closeFD(fd)
					return
				}
				if isDir {
					stack = append(stack, rel)
				}
			}
		}
		closeFD(fd)
	}
}
