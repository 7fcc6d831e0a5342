//go:build linux

package notifier

import "golang.org/x/sys/unix"

// notificationTypes is the whole mapping from one inotify event about an
// entry of a watched directory to Qumulo notification types.
//
// before is the entry as the index knew it, nil when it was not indexed;
// for IN_MOVED_TO, it is the entry under its old name (paired by the
// rename's cookie), when that is the same file. after is the entry as
// statx finds it now, nil when it is gone or was not examined. IN_ISDIR in
// mask tells the kind when neither is known. The types are about the
// subject of before and after.
func notificationTypes(mask uint32, before, after *snap) []Type {
	same := sameEntry(before, after)
	isDir := mask&unix.IN_ISDIR != 0
	if s := subject(before, after); s != nil {
		isDir = s.isDir()
	}
	kind := func(file, dir Type) Type {
		if isDir {
			return dir
		}
		return file
	}
	switch {
	case mask&unix.IN_CREATE != 0:
		if before != nil {
			return nil // indexed already, by a scan that raced with the event
		}
		return []Type{kind(ChildFileAdded, ChildDirAdded)}
	case mask&unix.IN_DELETE != 0:
		return []Type{kind(ChildFileRemoved, ChildDirRemoved)}
	case mask&unix.IN_MOVED_FROM != 0:
		return []Type{kind(ChildFileMovedFrom, ChildDirMovedFrom)}
	case mask&unix.IN_MOVED_TO != 0:
		t := []Type{kind(ChildFileMovedTo, ChildDirMovedTo)}
		if same {
			// Changes whose own events came only after the rename, when
			// the entry was no longer found under its old name.
			t = changed(t, before, after, mask)
		}
		return t
	}
	// IN_MODIFY, IN_ATTRIB or IN_ACCESS.
	var t []Type
	if mask&unix.IN_MODIFY != 0 && !isDir {
		// Written, even if renamed, removed or replaced since.
		t = append(t, ChildDataWritten)
	}
	if !same {
		// Which attributes changed is found by the rename's IN_MOVED_TO,
		// or is lost with the file.
		return t
	}
	return changed(t, before, after, mask)
}

// changed appends the types of what differs between two snapshots of one
// entry, among what the event can have changed, so that a later event does
// not inherit an earlier one's difference:
//
//	IN_MODIFY (write, truncate, mtime-only utimes): size, mtime
//	IN_ACCESS (read, atime-only utimes): atime
//	IN_ATTRIB (chmod, chown, utimes, xattrs): every attribute
//	IN_MOVED_TO (the changes a rename overtook): every attribute but a
//	  directory's mtime, which its own entries move
//
// Directories have no size nor atime worth reporting: they move with
// every entry and every listing.
func changed(t []Type, old, now *snap, mask uint32) []Type {
	file := !old.isDir()
	modify := mask&unix.IN_MODIFY != 0
	access := mask&unix.IN_ACCESS != 0
	attrib := mask&unix.IN_ATTRIB != 0
	moved := mask&unix.IN_MOVED_TO != 0
	all := attrib || moved
	if (modify || all) && file && now.size != old.size {
		t = append(t, ChildSizeChanged)
	}
	if (modify || attrib || moved && file) && now.mtime != old.mtime {
		t = append(t, ChildMtimeChanged)
	}
	if (access || all) && file && now.atime != old.atime {
		t = append(t, ChildAtimeChanged)
	}
	if attrib && now.btime != old.btime && now.btime != 0 && old.btime != 0 {
		t = append(t, ChildBtimeChanged)
	}
	if all && now.uid != old.uid {
		t = append(t, ChildOwnerChanged)
	}
	if all && now.gid != old.gid {
		t = append(t, ChildGroupChanged)
	}
	if all && (now.mode&07777 != old.mode&07777 || now.acl != old.acl) {
		t = append(t, ChildACLChanged)
	}
	if all && now.xattrs != old.xattrs {
		t = append(t, ChildExtraAttrsChanged)
	}
	return t
}

// refresh records in the index entry e what an event about it compared,
// and only that: a read's IN_ACCESS that follows a write's IN_MODIFY still
// finds the atime it changed.
func refresh(e, now *snap, mask uint32) {
	switch {
	case mask&unix.IN_ATTRIB != 0:
		*e = *now
	case mask&unix.IN_MODIFY != 0:
		e.size, e.mtime, e.ctime = now.size, now.mtime, now.ctime
	case mask&unix.IN_ACCESS != 0:
		e.atime = now.atime
	}
}

// subject is the entry the types of notificationTypes are about: as it is
// now while it is the same entry (or when it was not indexed), else as the
// index knew it; nil when neither is known.
func subject(before, after *snap) *snap {
	if after != nil && (before == nil || sameEntry(before, after)) {
		return after
	}
	return before
}

func sameEntry(a, b *snap) bool {
	return a != nil && b != nil && a.dev == b.dev && a.ino == b.ino
}

// statsXattrs tells whether the snapshot after an event needs the
// extended attributes, which cost further system calls: only what can
// change them, or a new entry.
func statsXattrs(mask uint32) bool {
	return mask&(unix.IN_ATTRIB|unix.IN_CREATE|unix.IN_MOVED_TO) != 0
}
