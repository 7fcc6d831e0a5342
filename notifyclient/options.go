// Package notifyclient follows an fs_notify stream or the etag change feed
// and prints one line per notification, reconnecting with Last-Event-ID
// when the stream ends or breaks: the `caddy fs-notify` command, as plain
// Go.
package notifyclient

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Options says what to follow and where to print it.
type Options struct {
	// URL is the gateway's base URL (http://localhost:8080), or with
	// Changes the change feed's own URL (http://localhost:8080/changes).
	URL string
	// Path (an absolute path below the fs_notify root) or ID (a
	// directory's file ID) names the directory to watch; exactly one.
	Path, ID string
	// Recursive watches the whole subtree.
	Recursive bool
	// Filter lists the notification types wanted; empty means all. For
	// fs_notify the gateway filters; the change feed has no filter of its
	// own, so with Changes the client does.
	Filter []string
	// Prefix is fs_notify's URL prefix. Default /v1/files.
	Prefix string
	// JSON prints each notification object as it came, one per line,
	// instead of "<type>\t<path>".
	JSON bool
	// Changes follows the change feed at URL instead of fs_notify.
	Changes bool
	// FilterPrefix limits the change feed to paths starting with one of
	// these (the feed's prefix parameter).
	FilterPrefix []string

	// Stdout gets the notifications, Stderr the notices.
	Stdout, Stderr io.Writer
	// Client makes the requests; nil means one with connection and
	// response-header timeouts, and no overall timeout.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait before a reconnection,
	// doubled after each failed attempt. Defaults 250ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultPrefix is fs_notify's default URL prefix.
const DefaultPrefix = "/v1/files"

// usageError is a mistake in the options, found before any request.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// IsUsage reports whether err is a mistake in the options.
func IsUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// streamURL builds the URL to follow from the options.
func (o *Options) streamURL() (string, error) {
	base, err := url.Parse(o.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", usagef("--url %q is not an http:// or https:// URL such as http://localhost:8080", o.URL)
	}
	if o.Changes {
		return o.changesURL(base)
	}
	if o.FilterPrefix != nil {
		return "", usagef("--filter-prefix applies to the change feed only; add --changes")
	}
	var ref string
	switch {
	case o.Path != "" && o.ID != "":
		return "", usagef("give --path or --id, not both")
	case o.Path != "":
		p := o.Path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		ref = url.PathEscape(p) // %2Fmy%2Fdirectory, as Qumulo's clients send it
	case o.ID != "":
		if strings.Trim(o.ID, "0123456789") != "" {
			return "", usagef("--id %q is not a file ID (the directory's inode number, digits only)", o.ID)
		}
		ref = o.ID
	default:
		return "", usagef("name the directory to watch with --path /my/directory or --id <file ID>")
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	prefix = "/" + strings.Trim(prefix, "/")
	q := url.Values{}
	if len(o.Filter) > 0 {
		q.Set("filter", strings.Join(o.Filter, ","))
	}
	if o.Recursive {
		q.Set("recursive", "true")
	}
	s := strings.TrimSuffix(base.Scheme+"://"+base.Host+base.EscapedPath(), "/") + escapePrefix(prefix) + "/" + ref + "/notify"
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s, nil
}

func (o *Options) changesURL(base *url.URL) (string, error) {
	if o.Path != "" || o.ID != "" || o.Recursive || o.Prefix != "" && o.Prefix != DefaultPrefix {
		return "", usagef("--path, --id, --recursive and --prefix apply to fs_notify; with --changes, --url is the feed itself and --filter-prefix selects paths")
	}
	q := base.Query()
	for _, p := range o.FilterPrefix {
		q.Add("prefix", p)
	}
	base.RawQuery = q.Encode()
	return base.String(), nil
}

// escapePrefix escapes each segment of a URL path prefix.
func escapePrefix(prefix string) string {
	segs := strings.Split(prefix, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
