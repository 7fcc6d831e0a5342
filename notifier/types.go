package notifier

import (
	"fmt"
	"strings"
)

// Type is a Qumulo notification type.
type Type uint8

// The notification types of Qumulo Core's /v1/files/<ref>/notify API. The
// child_stream_* types are accepted in filters but never produced: Linux
// files have no alternate data streams.
const (
	ChildFileAdded Type = iota
	ChildDirAdded
	ChildFileRemoved
	ChildDirRemoved
	ChildFileMovedFrom
	ChildFileMovedTo
	ChildDirMovedFrom
	ChildDirMovedTo
	ChildDataWritten
	ChildSizeChanged
	ChildMtimeChanged
	ChildAtimeChanged
	ChildBtimeChanged
	ChildOwnerChanged
	ChildGroupChanged
	ChildACLChanged
	ChildExtraAttrsChanged
	ChildStreamAdded
	ChildStreamRemoved
	ChildStreamMovedFrom
	ChildStreamMovedTo
	ChildStreamSizeChanged
	ChildStreamDataWritten
	SelfRemoved
	numTypes
)

var typeNames = [numTypes]string{
	ChildFileAdded:         "child_file_added",
	ChildDirAdded:          "child_dir_added",
	ChildFileRemoved:       "child_file_removed",
	ChildDirRemoved:        "child_dir_removed",
	ChildFileMovedFrom:     "child_file_moved_from",
	ChildFileMovedTo:       "child_file_moved_to",
	ChildDirMovedFrom:      "child_dir_moved_from",
	ChildDirMovedTo:        "child_dir_moved_to",
	ChildDataWritten:       "child_data_written",
	ChildSizeChanged:       "child_size_changed",
	ChildMtimeChanged:      "child_mtime_changed",
	ChildAtimeChanged:      "child_atime_changed",
	ChildBtimeChanged:      "child_btime_changed",
	ChildOwnerChanged:      "child_owner_changed",
	ChildGroupChanged:      "child_group_changed",
	ChildACLChanged:        "child_acl_changed",
	ChildExtraAttrsChanged: "child_extra_attrs_changed",
	ChildStreamAdded:       "child_stream_added",
	ChildStreamRemoved:     "child_stream_removed",
	ChildStreamMovedFrom:   "child_stream_moved_from",
	ChildStreamMovedTo:     "child_stream_moved_to",
	ChildStreamSizeChanged: "child_stream_size_changed",
	ChildStreamDataWritten: "child_stream_data_written",
	SelfRemoved:            "self_removed",
}

// String returns the type's wire name, e.g. "child_file_added".
func (t Type) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// TypeNames lists every notification type accepted in a filter, in the
// order of Qumulo's documentation.
func TypeNames() []string {
	return append([]string(nil), typeNames[:]...)
}

// Filter is a set of notification types.
type Filter uint32

// AllTypes is the filter of a request without one.
const AllTypes Filter = 1<<numTypes - 1

// Has reports whether t is in the set.
func (f Filter) Has(t Type) bool { return f&(1<<t) != 0 }

// ParseFilter parses a comma-separated list of type names. An empty string
// means every type. Unknown names are an error naming the first one.
func ParseFilter(s string) (Filter, error) {
	if strings.TrimSpace(s) == "" {
		return AllTypes, nil
	}
	var f Filter
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		t, ok := typeByName(name)
		if !ok {
			return 0, fmt.Errorf("unknown notification type %q", name)
		}
		f |= 1 << t
	}
	if f == 0 {
		return AllTypes, nil
	}
	return f, nil
}

func typeByName(name string) (Type, bool) {
	for i, n := range typeNames {
		if n == name {
			return Type(i), true
		}
	}
	return 0, false
}
