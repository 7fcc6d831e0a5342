package notifyclient

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// notification is what the client reads of each object of a payload;
// fs_notify's and the change feed's share type and path.
type notification struct {
	Type string `json:"type"`
	Path string `json:"path"`
}

// handle prints the notifications of a message and reports an overflow.
func (c *client) handle(ev event) error {
	switch ev.name {
	case "", "message":
		return c.print(ev.data)
	case "overflow":
		var o struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(ev.data, &o)
		if o.Reason == "" {
			o.Reason = "unknown"
		}
		c.notice("overflow (reason %s): notifications were lost; rescan what you follow", o.Reason)
	}
	return nil
}

// print writes one line per notification of a payload, flushed at once.
func (c *client) print(data []byte) error {
	var objects []json.RawMessage
	if err := json.Unmarshal(data, &objects); err != nil {
		c.notice("skipping an event that is not a JSON array of notifications: %v", err)
		return nil
	}
	removed := false
	for _, raw := range objects {
		var n notification
		if err := json.Unmarshal(raw, &n); err != nil {
			c.notice("skipping a notification that is not an object: %s", raw)
			continue
		}
		if c.types != nil && !c.types[n.Type] {
			continue
		}
		if c.o.JSON {
			c.line.Reset()
			_ = json.Compact(&c.line, raw) // valid: json.Unmarshal read it
			c.line.WriteByte('\n')
			_, _ = c.out.Write(c.line.Bytes())
		} else {
			fmt.Fprintf(c.out, "%s\t%s\n", n.Type, printable(n.Path))
		}
		removed = removed || (n.Type == "self_removed" && !c.o.Changes)
	}
	if err := c.out.Flush(); err != nil {
		return &fatalError{fmt.Errorf("writing to stdout: %w", err)}
	}
	if removed {
		return errRemoved
	}
	return nil
}

// printable quotes a path with a tab, a newline or another control
// character in it, so that every notification stays on its own line.
func printable(p string) string {
	if strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return p
	}
	return strconv.Quote(p)
}
