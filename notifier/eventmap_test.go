//go:build linux

package notifier

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// The operations of TestNotificationTypes, one a line: a verb, a path
// relative to the watched directory ("@/x" is x in a directory beside it,
// outside the watched tree), and arguments.
//
//	create f                  an empty file, mode 0644
//	write f <text>            append
//	truncate f <size>
//	chmod f <octal mode>
//	chown f <uid>, chgrp f <gid>
//	atime f <unix seconds>    touch -a
//	mtime f <unix seconds>    touch -m
//	utimes f <unix seconds>   touch (both)
//	read f
//	setxattr f <name> <value>, rmxattr f <name>
//	acl f                     setfacl -m u:4242:r (a system.posix_acl_access attribute)
//	mv a b, rm f, link a b, symlink l <target>, mkfifo p
//	mkdir d, rmdir d
//	wait <duration>           sleep (the path is the duration)
type opCase struct {
	name      string
	setup     string // before the stream opens: not reported
	ops       string
	recursive bool
	// want lists "type path" as they must arrive, in order; types in may
	// can appear as well, anywhere (a timestamp that moves or not
	// depending on the kernel clock's tick).
	want  []string
	may   []string
	needs string // "root", "xattr" or "acl": skipped without
}

var opCases = []opCase{
	{name: "create", ops: "create f", want: []string{"child_file_added f"}},
	{name: "write", setup: "create f", ops: "write f hello",
		want: []string{"child_data_written f", "child_size_changed f"}, may: []string{"child_mtime_changed"}},
	{name: "truncate", setup: "create f\nwrite f hello", ops: "truncate f 2",
		want: []string{"child_data_written f", "child_size_changed f"}, may: []string{"child_mtime_changed"}},
	{name: "chmod", setup: "create f", ops: "chmod f 600", want: []string{"child_acl_changed f"}},
	{name: "chmod setuid", setup: "create f", ops: "chmod f 4644", want: []string{"child_acl_changed f"}},
	{name: "chown", setup: "create f", ops: "chown f 4242", want: []string{"child_owner_changed f"}, needs: "root"},
	{name: "chgrp", setup: "create f", ops: "chgrp f 4343", want: []string{"child_group_changed f"}, needs: "root"},
	{name: "touch -a", setup: "create f", ops: "atime f 1000000000", want: []string{"child_atime_changed f"}},
	{name: "touch -m", setup: "create f", ops: "mtime f 1100000000",
		want: []string{"child_data_written f", "child_mtime_changed f"}},
	{name: "touch", setup: "create f", ops: "utimes f 1200000000",
		want: []string{"child_mtime_changed f", "child_atime_changed f"}},
	{name: "read", setup: "create f\nwrite f hello\natime f 1000000000", ops: "read f",
		want: []string{"child_atime_changed f"}},
	{name: "read twice in a burst", setup: "create f\nwrite f hello\natime f 1000000000", ops: "read f\nread f",
		want: []string{"child_atime_changed f"}},
	{name: "setxattr", setup: "create f", ops: "setxattr f user.etaggate v1",
		want: []string{"child_extra_attrs_changed f"}, needs: "xattr"},
	{name: "setxattr again", setup: "create f\nsetxattr f user.etaggate v1", ops: "setxattr f user.etaggate v2",
		want: []string{"child_extra_attrs_changed f"}, needs: "xattr"},
	{name: "removexattr", setup: "create f\nsetxattr f user.etaggate v1", ops: "rmxattr f user.etaggate",
		want: []string{"child_extra_attrs_changed f"}, needs: "xattr"},
	{name: "setfacl", setup: "create f", ops: "acl f", want: []string{"child_acl_changed f"}, needs: "acl"},
	{name: "rename within", setup: "create f", ops: "mv f g",
		want: []string{"child_file_moved_from f", "child_file_moved_to g"}},
	{name: "rename over another file", setup: "create a\ncreate b", ops: "mv a b",
		want: []string{"child_file_moved_from a", "child_file_removed b", "child_file_moved_to b"}},
	{name: "rename out of the tree", setup: "create f", ops: "mv f @/f", want: []string{"child_file_moved_from f"}},
	{name: "rename into the tree", setup: "create @/g", ops: "mv @/g h", want: []string{"child_file_moved_to h"}},
	{name: "rm", setup: "create f", ops: "rm f", want: []string{"child_file_removed f"}},
	{name: "hard link", setup: "create f", ops: "link f g", want: []string{"child_file_added g"}},
	{name: "symlink", ops: "symlink ln /etc/passwd", want: []string{"child_file_added ln"}},
	{name: "mkfifo", ops: "mkfifo p", want: []string{"child_file_added p"}},
	{name: "mkdir", ops: "mkdir d", want: []string{"child_dir_added d"}},
	{name: "chmod dir", setup: "mkdir d", ops: "chmod d 700", want: []string{"child_acl_changed d"}},
	{name: "touch dir", setup: "mkdir d", ops: "utimes d 1200000000", want: []string{"child_mtime_changed d"}},
	{name: "rename dir", setup: "mkdir d", ops: "mv d e",
		want: []string{"child_dir_moved_from d", "child_dir_moved_to e"}},
	{name: "rename dir out", setup: "mkdir d", ops: "mv d @/d", want: []string{"child_dir_moved_from d"}},
	{name: "rename dir in", setup: "mkdir @/d", ops: "mv @/d e", want: []string{"child_dir_moved_to e"}},
	{name: "rmdir", setup: "mkdir d", ops: "rmdir d", want: []string{"child_dir_removed d"}},
	{name: "grandchildren unseen", setup: "mkdir d", ops: "create d/f\nmkdir d/e\nchmod d/f 600", want: nil},

	{name: "mkdir -p, recursive", recursive: true, ops: "mkdir a\nmkdir a/b\ncreate a/b/f",
		want: []string{"child_dir_added a", "child_dir_added a/b", "child_file_added a/b/f"}},
	{name: "write deep, recursive", recursive: true, setup: "mkdir s\ncreate s/f", ops: "write s/f x",
		want: []string{"child_data_written s/f", "child_size_changed s/f"}, may: []string{"child_mtime_changed"}},
	{name: "rename deep, recursive", recursive: true, setup: "mkdir s\nmkdir t\ncreate s/f", ops: "mv s/f t/g",
		want: []string{"child_file_moved_from s/f", "child_file_moved_to t/g"}},
	// What a directory brings is indexed, not reported, when it is older
	// than the move by more than the kernel clock's slack; what is
	// created in it after the move is reported.
	{name: "directory moved in with contents, recursive", recursive: true, setup: "mkdir @/m\ncreate @/m/x\nwait 50ms", ops: "mv @/m m",
		want: []string{"child_dir_moved_to m"}},
	{name: "created in a directory just moved in, recursive", recursive: true, setup: "mkdir @/m\ncreate @/m/x\nwait 50ms",
		ops: "mv @/m m\ncreate m/y", want: []string{"child_dir_moved_to m", "child_file_added m/y"}},
	{name: "rmdir deep, recursive", recursive: true, setup: "mkdir s\nmkdir s/t\ncreate s/t/f", ops: "rm s/t/f\nrmdir s/t",
		want: []string{"child_file_removed s/t/f", "child_dir_removed s/t"}},
	// Entries and then an attribute of their directory, in one burst: the
	// directory's new mtime is its entries', not a change of its own, and
	// the chmod is still told although the directory is examined once,
	// after both.
	{name: "chmod of a directory after entries made in it, recursive", recursive: true, setup: "mkdir d", ops: "create d/f\ncreate d/g\nchmod d 700",
		want: []string{"child_file_added d/f", "child_file_added d/g", "child_acl_changed d"}},
}

// TestNotificationTypes performs each case's operations on real files
// under a real Notifier, and checks, through a real SSE client, the types
// and paths reported, and that each spine holds the file IDs stat gives.
// Cases are one line each: add one for any behaviour worth pinning.
func TestNotificationTypes(t *testing.T) {
	root := t.TempDir()
	_, base := start(t, testConfig(root))
	xattrOK := unix.Setxattr(root, "user.probe", []byte("1"), 0) == nil
	aclOK := unix.Setxattr(root, "system.posix_acl_access", aclXattr(), 0) == nil
	seen := map[string]bool{}
	for i, c := range opCases {
		t.Run(c.name, func(t *testing.T) {
			switch {
			case c.needs == "root" && os.Geteuid() != 0:
				t.Skip("needs root")
			case c.needs == "xattr" && !xattrOK:
				t.Skip("no user xattrs on this file system")
			case c.needs == "acl" && !aclOK:
				t.Skip("no POSIX ACLs on this file system")
			}
			dir := filepath.Join(root, fmt.Sprintf("case%d", i))
			testutil.Must(t, os.Mkdir(dir, 0o755))
			testutil.Must(t, os.Mkdir(dir+"-out", 0o755))
			runOps(t, dir, c.setup)
			s := ssetest.MustOpen(t, client(), streamURL(base, encode("/"+filepath.Base(dir)), "recursive="+strconv.FormatBool(c.recursive)), nil)
			before := inodes(t, dir)
			runOps(t, dir, c.ops)
			after := inodes(t, dir)
			got := s.Collect(t, arrive, func(ns []ssetest.Notification) bool { return ssetest.Has(ns, "child_file_added", ".marker") })
			got = got[:ssetest.Index(got, "child_file_added", ".marker")]
			checkTypes(t, got, c)
			for _, n := range got {
				checkSpine(t, n, before, after)
				seen[n.Type] = true
			}
		})
	}
	for _, typ := range TypeNames() {
		linux := !strings.HasPrefix(typ, "child_stream_") && typ != "child_btime_changed"
		if seen[typ] && !linux {
			t.Errorf("%s was produced; Linux cannot cause it", typ)
		}
		if !seen[typ] && linux && typ != "self_removed" && !t.Failed() && os.Geteuid() == 0 && xattrOK && aclOK {
			t.Errorf("no case produces %s", typ)
		}
	}
}

// checkTypes compares what arrived with the case's want, in order, and
// may.
func checkTypes(t *testing.T, got []ssetest.Notification, c opCase) {
	t.Helper()
	var lines, required []string
	for _, n := range got {
		line := n.Type + " " + n.Path
		lines = append(lines, line)
		if !slices.Contains(c.may, n.Type) || slices.Contains(c.want, line) {
			required = append(required, line)
		}
	}
	if !slices.Equal(required, c.want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(lines, "\n\t"), strings.Join(c.want, "\n\t"))
	}
}

// checkSpine checks that n's spine is the watched directory's file ID and
// those of each directory down to the entry: as the entry was before the
// operations for what is gone (removed, moved from), else as it is now.
func checkSpine(t *testing.T, n ssetest.Notification, before, after map[string]uint64) {
	t.Helper()
	gone := strings.HasSuffix(n.Type, "_removed") || strings.HasSuffix(n.Type, "_moved_from")
	want := []string{strconv.FormatUint(after["."], 10)}
	parts := strings.Split(n.Path, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		ino, ok := after[p]
		if gone && i == len(parts)-1 || !ok {
			ino = before[p]
		}
		want = append(want, strconv.FormatUint(ino, 10))
	}
	if !slices.Equal(n.Spine, want) {
		t.Errorf("%s %s: spine %v, want %v", n.Type, n.Path, n.Spine, want)
	}
	if n.StreamName != nil {
		t.Errorf("stream_name %q, want null", *n.StreamName)
	}
}

// inodes maps every path below dir (and "." for dir) to its file ID.
func inodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	testutil.Must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = info.Sys().(*syscall.Stat_t).Ino
		return nil
	}))
	return m
}

// runOps performs the operations of script in dir, then (for the
// observed ones) creates the marker that ends what they caused.
func runOps(t *testing.T, dir, script string) {
	t.Helper()
	path := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "@/"); ok {
			return filepath.Join(dir+"-out", rest)
		}
		return filepath.Join(dir, p)
	}
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		arg := func(i int) string {
			if i >= len(f) {
				t.Fatalf("%q: too few arguments", line)
			}
			return f[i]
		}
		num := func(i int) int64 {
			v, err := strconv.ParseInt(arg(i), 0, 64)
			testutil.Must(t, err)
			return v
		}
		if f[0] == "wait" {
			d, err := time.ParseDuration(arg(1))
			testutil.Must(t, err)
			time.Sleep(d)
			continue
		}
		p := path(arg(1))
		var err error
		switch f[0] {
		case "create":
			err = os.WriteFile(p, nil, 0o644)
		case "write":
			var fh *os.File
			if fh, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); err == nil {
				_, err = fh.WriteString(arg(2))
				err = errors.Join(err, fh.Close())
			}
		case "truncate":
			err = os.Truncate(p, num(2))
		case "chmod":
			err = unix.Fchmodat(unix.AT_FDCWD, p, uint32(num(2)), 0)
		case "chown":
			err = os.Lchown(p, int(num(2)), -1)
		case "chgrp":
			err = os.Lchown(p, -1, int(num(2)))
		case "atime":
			err = utimes(p, unix.Timespec{Sec: num(2)}, unix.Timespec{Nsec: unix.UTIME_OMIT})
		case "mtime":
			err = utimes(p, unix.Timespec{Nsec: unix.UTIME_OMIT}, unix.Timespec{Sec: num(2)})
		case "utimes":
			err = utimes(p, unix.Timespec{Sec: num(2)}, unix.Timespec{Sec: num(2)})
		case "read":
			_, err = os.ReadFile(p)
		case "setxattr":
			err = unix.Lsetxattr(p, arg(2), []byte(arg(3)), 0)
		case "rmxattr":
			err = unix.Lremovexattr(p, arg(2))
		case "acl":
			err = unix.Lsetxattr(p, "system.posix_acl_access", aclXattr(), 0)
		case "mv":
			err = os.Rename(p, path(arg(2)))
		case "rm", "rmdir":
			err = os.Remove(p)
		case "link":
			err = os.Link(p, path(arg(2)))
		case "symlink":
			err = os.Symlink(arg(2), p)
		case "mkfifo":
			err = unix.Mkfifo(p, 0o644)
		case "mkdir":
			err = os.Mkdir(p, 0o755)
		default:
			t.Fatalf("unknown operation %q", line)
		}
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	testutil.Must(t, os.WriteFile(filepath.Join(dir, ".marker"), nil, 0o644))
	testutil.Must(t, os.Remove(filepath.Join(dir, ".marker")))
}

func utimes(p string, atime, mtime unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

// aclXattr is the system.posix_acl_access value of u::rw,u:4242:r,g::r,m::r,o::-
// (setfacl -m u:4242:r on a 0640 file).
func aclXattr() []byte {
	const undefined = 0xffffffff
	b := binary.LittleEndian.AppendUint32(nil, 2) // version
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, undefined}, {0x02, 4, 4242}, {0x04, 4, undefined}, {0x10, 4, undefined}, {0x20, 0, undefined}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// TestNotificationTypesEdges checks the mapping where real operations
// cannot pin it, because it depends on when the gateway examines a file:
// gone before, renamed since, already seen by a scan.
func TestNotificationTypesEdges(t *testing.T) {
	file := &snap{ino: 10, mode: unix.S_IFREG | 0o644, size: 1, mtime: 1, atime: 1, btime: 5}
	dir := &snap{ino: 20, mode: unix.S_IFDIR | 0o755, mtime: 1}
	other := &snap{ino: 11, mode: unix.S_IFREG | 0o644}
	with := func(s *snap, f func(*snap)) *snap { c := *s; f(&c); return &c }
	grown := with(file, func(s *snap) { s.size, s.mtime, s.atime, s.uid = 2, 2, 2, 7 })
	for _, c := range []struct {
		name          string
		mask          uint32
		before, after *snap
		want          []Type
		subject       *snap
	}{
		{"created and gone before examined", unix.IN_CREATE, nil, nil, []Type{ChildFileAdded}, nil},
		{"directory created and gone", unix.IN_CREATE | unix.IN_ISDIR, nil, nil, []Type{ChildDirAdded}, nil},
		{"created, seen by a scan first", unix.IN_CREATE, file, file, nil, file},
		{"removed, never indexed", unix.IN_DELETE, nil, nil, []Type{ChildFileRemoved}, nil},
		{"written, then renamed or replaced", unix.IN_MODIFY, file, other, []Type{ChildDataWritten}, file},
		{"written, never indexed", unix.IN_MODIFY, nil, nil, []Type{ChildDataWritten}, nil},
		{"attributes of a file gone since", unix.IN_ATTRIB, file, nil, nil, file},
		{"a directory's write", unix.IN_MODIFY | unix.IN_ISDIR, dir, with(dir, func(s *snap) { s.mtime = 2 }), []Type{ChildMtimeChanged}, nil},
		{"a directory's read", unix.IN_ACCESS | unix.IN_ISDIR, dir, with(dir, func(s *snap) { s.atime = 2 }), nil, nil},
		{"a read leaves other changes to their events", unix.IN_ACCESS, file, grown, []Type{ChildAtimeChanged}, nil},
		{"a write leaves the owner to its event", unix.IN_MODIFY, file, grown, []Type{ChildDataWritten, ChildSizeChanged, ChildMtimeChanged}, nil},
		{"changes a rename overtook", unix.IN_MOVED_TO, file, grown,
			[]Type{ChildFileMovedTo, ChildSizeChanged, ChildMtimeChanged, ChildAtimeChanged, ChildOwnerChanged}, grown},
		{"a moved directory's mtime is its entries'", unix.IN_MOVED_TO | unix.IN_ISDIR, dir, with(dir, func(s *snap) { s.mtime = 2 }), []Type{ChildDirMovedTo}, nil},
		{"moved in and gone at once", unix.IN_MOVED_TO, file, nil, []Type{ChildFileMovedTo}, file},
		{"a birth time that moved", unix.IN_ATTRIB, file, with(file, func(s *snap) { s.btime = 6 }), []Type{ChildBtimeChanged}, nil},
		{"a birth time learnt", unix.IN_ATTRIB, with(file, func(s *snap) { s.btime = 0 }), file, nil, nil},
	} {
		if got := notificationTypes(c.mask, c.before, c.after); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if c.subject != nil || c.before == nil && c.after == nil {
			if got := subject(c.before, c.after); got != c.subject {
				t.Errorf("%s: about %+v, want %+v", c.name, got, c.subject)
			}
		}
	}
}
