//go:build !linux

package notifier

import "net/http"

// Notifier is only implemented on Linux, where inotify exists.
type Notifier struct{}

// New fails: fs_notify needs Linux inotify.
func New(cfg Config) (*Notifier, error) { return nil, ErrUnsupportedOS }

// Root is empty on this platform.
func (n *Notifier) Root() string { return "" }

// Close does nothing on this platform.
func (n *Notifier) Close() error { return nil }

// Stats is empty on this platform.
func (n *Notifier) Stats() Stats { return Stats{} }

// Match never matches on this platform.
func (n *Notifier) Match(r *http.Request) bool { return false }

// Serve is never reached on this platform.
func (n *Notifier) Serve(w http.ResponseWriter, r *http.Request) error {
	n.ServeHTTP(w, r)
	return nil
}

// ServeHTTP is never reached on this platform.
func (n *Notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, ErrUnsupportedOS.Error(), http.StatusNotImplemented)
}
