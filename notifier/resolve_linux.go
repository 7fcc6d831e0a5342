//go:build linux

package notifier

import (
	"errors"
	"io/fs"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/sse"
)

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// resolve opens the directory a ref names: a file ID (all digits), or an
// absolute path, URL-encoded or as plain segments, taken below root. The
// returned O_PATH descriptor is confined to root both lexically (no ".."
// segment) and physically (symlinks resolved, then opened with no symlink
// allowed on the way); rel is its path below root.
func (n *Notifier) resolve(ref string) (fd int, rel string, err error) {
	n.rootMu.RLock()
	defer n.rootMu.RUnlock()
	if n.rootFD < 0 {
		return -1, "", sse.ErrClosed
	}
	if isDigits(ref) {
		ino, err := strconv.ParseUint(ref, 10, 64)
		if err != nil {
			return -1, "", ErrNotFound
		}
		rel, err := n.pathOfID(ino)
		if err != nil {
			return -1, "", err
		}
		return n.openRel(rel)
	}
	p, err := url.PathUnescape(ref)
	if err != nil || strings.IndexByte(p, 0) >= 0 {
		return -1, "", ErrNotFound
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return -1, "", ErrOutsideRoot
		}
	}
	rel = strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	return n.openRel(rel)
}

func (n *Notifier) openRel(rel string) (int, string, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(n.root, rel))
	if err != nil {
		return -1, "", ErrNotFound
	}
	if !within(n.root, real) {
		return -1, "", ErrOutsideRoot
	}
	r := strings.TrimPrefix(strings.TrimPrefix(real, n.root), "/")
	if r == "" {
		r = "."
	}
	fd, err := openBeneath(n.rootFD, r, unix.O_PATH)
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return -1, "", ErrOutsideRoot
	case errors.Is(err, unix.EACCES):
		return -1, "", fs.ErrPermission
	case err != nil:
		return -1, "", ErrNotFound
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		closeFD(fd)
		return -1, "", ErrNotFound
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		closeFD(fd)
		return -1, "", ErrNotDirectory
	}
	return fd, r, nil
}

// pathOfID finds the directory whose inode is ino: the root, a watched
// directory, a cached answer still true, or else a recent walk of the
// tree (recentWalk).
func (n *Notifier) pathOfID(ino uint64) (string, error) {
	if ino == n.rootIno {
		return ".", nil
	}
	isDirAt := func(rel string) bool {
		var st unix.Stat_t
		return unix.Fstatat(n.rootFD, rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			st.Ino == ino && st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	n.mu.Lock()
	var candidates []string
	for _, x := range n.nodes {
		if x.ino == ino && !x.gone {
			candidates = append(candidates, x.rel())
		}
	}
	if rel, ok := n.idCache[ino]; ok {
		candidates = append(candidates, rel)
	}
	n.mu.Unlock()
	for _, rel := range candidates {
		if isDirAt(rel) {
			return rel, nil
		}
	}
	rel, isDir, found := n.recentWalk().lookup(ino)
	switch {
	case !found:
		return "", ErrNotFound
	case !isDir:
		return "", ErrNotDirectory
	case !isDirAt(rel):
		return "", ErrNotFound // moved or removed since the walk
	}
	return rel, nil
}
