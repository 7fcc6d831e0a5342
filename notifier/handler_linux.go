//go:build linux

package notifier

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/internal/problem"
)

const notifySuffix = "/notify"

// refOf extracts the still-escaped ref of a <prefix>/<ref>/notify URL.
func (n *Notifier) refOf(r *http.Request) (string, bool) {
	p := r.URL.EscapedPath()
	pre := n.cfg.Prefix + "/"
	if len(p) <= len(pre)+len(notifySuffix) || !strings.HasPrefix(p, pre) || !strings.HasSuffix(p, notifySuffix) {
		return "", false
	}
	return p[len(pre) : len(p)-len(notifySuffix)], true
}

// Match reports whether r is addressed to the notify endpoint, i.e. its
// path is <prefix>/<ref>/notify. Other requests are not n's business.
func (n *Notifier) Match(r *http.Request) bool {
	_, ok := n.refOf(r)
	return ok
}

// ServeHTTP answers GET <prefix>/<ref>/notify?filter=...&recursive=... with
// a stream of server-sent events, and every error with a problem document.
func (n *Notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ref, ok := n.refOf(r)
	if !ok {
		n.fail(w, r, http.StatusNotFound, "not a notify URL; expected "+n.cfg.Prefix+"/<ref>/notify", nil, nil)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		n.fail(w, r, http.StatusMethodNotAllowed, "the notify endpoint only answers GET", nil, nil)
		return
	}
	if n.isClosed() {
		n.fail(w, r, http.StatusServiceUnavailable, "the server is shutting down or reloading", nil, ErrClosed)
		return
	}
	q := r.URL.Query()
	filter, err := ParseFilter(strings.Join(q["filter"], ","))
	if err != nil {
		n.fail(w, r, http.StatusBadRequest, "filter: "+strings.TrimPrefix(err.Error(), "notifier: "),
			map[string]any{"valid_values": TypeNames()}, nil)
		return
	}
	rec := false
	if vs, ok := q["recursive"]; ok {
		switch strings.ToLower(vs[0]) {
		case "true":
			rec = true
		case "false":
		default:
			n.fail(w, r, http.StatusBadRequest, "recursive must be true or false, not "+strconv.Quote(vs[0]),
				map[string]any{"valid_values": []string{"true", "false"}}, nil)
			return
		}
	}
	fd, rel, err := n.resolve(ref)
	if err != nil {
		n.failRef(w, r, ref, err)
		return
	}
	lastID, hasLastID := "", false
	if v := r.Header.Values("Last-Event-ID"); len(v) > 0 {
		lastID, hasLastID = strings.TrimSpace(v[0]), true
	}
	s, err := n.subscribe(fd, rel, rec, filter, lastID, hasLastID)
	if err != nil {
		n.failRef(w, r, ref, err)
		return
	}
	n.log.Debug("stream opened", zap.String("ref", ref), zap.Bool("recursive", rec),
		zap.String("remote_addr", r.RemoteAddr), zap.Bool("last_event_id", hasLastID))
	// HTTP/1.x on a plain connection: the wire hub writes the stream from
	// here on, and the request's goroutine and buffers go. HTTP/2 and
	// HTTP/3 streams share their connection, and a TLS connection needs a
	// goroutine to write through: those are served here until they end.
	plain := r.ProtoMajor == 1 && r.TLS == nil
	if err := s.open(w, plain); err != nil {
		s.Close()
		n.log.Debug("stream closed", zap.String("ref", ref), zap.String("remote_addr", r.RemoteAddr), zap.NamedError("cause", err))
		return
	}
	if plain {
		if conn, ok := takeOver(w); ok {
			n.wires.add(s, conn, r.ProtoAtLeast(1, 1), ref)
			return
		}
	}
	defer s.Close()
	err = s.serve(w, r)
	n.log.Debug("stream closed", zap.String("ref", ref), zap.String("remote_addr", r.RemoteAddr), zap.NamedError("cause", err))
}

func (n *Notifier) failRef(w http.ResponseWriter, r *http.Request, ref string, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		n.fail(w, r, http.StatusNotFound, "no directory "+strconv.Quote(ref)+" below root", nil, err)
	case errors.Is(err, ErrOutsideRoot):
		n.fail(w, r, http.StatusNotFound, "no directory "+strconv.Quote(ref)+" below root", nil, err)
	case errors.Is(err, ErrNotDirectory):
		n.fail(w, r, http.StatusBadRequest, strconv.Quote(ref)+" is not a directory; only directories can be watched", nil, err)
	case errors.Is(err, ErrTooManyStreams):
		w.Header().Set("Retry-After", "5")
		n.fail(w, r, http.StatusServiceUnavailable, "too many subscribers (max_subscribers "+strconv.Itoa(n.cfg.MaxSubscribers)+")", nil, err)
	case errors.Is(err, ErrWatchLimit):
		n.fail(w, r, http.StatusServiceUnavailable,
			"the kernel's inotify watch limit is reached; raise the sysctl fs.inotify.max_user_watches",
			map[string]any{"sysctl": "fs.inotify.max_user_watches"}, err)
	case errors.Is(err, ErrClosed):
		n.fail(w, r, http.StatusServiceUnavailable, "the server is shutting down or reloading", nil, err)
	case errors.Is(err, fs.ErrPermission):
		n.fail(w, r, http.StatusForbidden, "the server may not read "+strconv.Quote(ref), nil, err)
	default:
		n.fail(w, r, http.StatusInternalServerError, "cannot watch "+strconv.Quote(ref), nil, err)
	}
}

func (n *Notifier) fail(w http.ResponseWriter, r *http.Request, status int, detail string, ext map[string]any, err error) {
	d := problem.New(status, detail)
	d.Extensions = ext
	problem.Write(w, d)
	log := n.log.Info
	if status >= 500 {
		log = n.log.Error
	}
	log("fs_notify request refused",
		zap.Int("status", status),
		zap.String("detail", detail),
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("uri", r.RequestURI),
		zap.String("remote_addr", r.RemoteAddr),
		zap.NamedError("cause", err))
}

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
		return -1, "", ErrClosed
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
// directory, a cached answer still true, or else a walk of the tree.
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
	found, foundDir := "", false
	seen := make(map[uint64]string)
	walkInodes(n.rootFD, func(rel string, i uint64, isDir bool) bool {
		if isDir && len(seen) < 1<<16 {
			seen[i] = rel
		}
		if i == ino {
			found, foundDir = rel, isDir
			return false
		}
		return true
	})
	n.mu.Lock()
	if len(n.idCache)+len(seen) > 1<<16 {
		clear(n.idCache)
	}
	for k, v := range seen {
		n.idCache[k] = v
	}
	n.mu.Unlock()
	switch {
	case found == "":
		return "", ErrNotFound
	case !foundDir:
		return "", ErrNotDirectory
	}
	return found, nil
}
