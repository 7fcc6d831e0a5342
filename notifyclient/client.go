package notifyclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// fatalError ends Run: the gateway refused the request (4xx) or answered
// something that is not a stream, and asking again would not help.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// errRemoved ends a stream whose watched directory is gone.
var errRemoved = errors.New("the watched directory was removed")

// Run follows the stream until ctx ends (then it returns nil), the
// watched directory is removed (nil too), or the gateway refuses the
// request (an error saying why: the problem document's detail for a 4xx).
// A stream that ends or breaks, a connection that fails and a 5xx are
// retried with Last-Event-ID, after a wait that doubles up to MaxBackoff.
func Run(ctx context.Context, o Options) error {
	u, err := o.streamURL()
	if err != nil {
		return err
	}
	c := newClient(o, u)
	wait := c.minBackoff
	for {
		delivered, err := c.follow(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errRemoved):
			c.notice("%v; stopping", err)
			return nil
		}
		var fe *fatalError
		if errors.As(err, &fe) {
			return err
		}
		if delivered {
			wait = c.minBackoff
		}
		pause := wait
		var re *retryError
		if errors.As(err, &re) && re.after > 0 {
			pause = min(max(pause, re.after), c.maxBackoff)
		}
		c.notice("%v; reconnecting in %s%s", err, pause, c.resumeNote())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		wait = min(2*wait, c.maxBackoff)
	}
}

// retryError is a 5xx answer: the gateway may serve the stream later.
type retryError struct {
	err   error
	after time.Duration // the answer's Retry-After
}

func (e *retryError) Error() string { return e.err.Error() }

type client struct {
	o          Options
	url        string
	http       *http.Client
	out        *bufio.Writer
	line       bytes.Buffer // a notification being compacted for --json
	lastID     string
	reconnect  bool // a stream was open before: say so when the next one opens
	minBackoff time.Duration
	maxBackoff time.Duration
	types      map[string]bool // the change feed's client-side filter
}

func newClient(o Options, u string) *client {
	c := &client{o: o, url: u, http: o.Client, out: bufio.NewWriter(o.Stdout), minBackoff: o.MinBackoff, maxBackoff: o.MaxBackoff}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			DisableCompression:    true, // compression would hold events back
		}}
	}
	if c.minBackoff <= 0 {
		c.minBackoff = 250 * time.Millisecond
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = 5 * time.Second
	}
	if o.Changes && len(o.Filter) > 0 {
		c.types = map[string]bool{}
		for _, t := range o.Filter {
			c.types[t] = true
		}
	}
	return c
}

func (c *client) notice(format string, args ...any) {
	fmt.Fprintf(c.o.Stderr, "fs-notify: "+format+"\n", args...)
}

func (c *client) resumeNote() string {
	if c.lastID == "" {
		return ""
	}
	return " with Last-Event-ID " + c.lastID
}

// follow opens the stream and prints what it carries until it ends. It
// reports whether any event arrived, so that a stream that keeps failing
// at once backs off while one that worked for a while reconnects quickly.
func (c *client) follow(ctx context.Context) (delivered bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return false, &fatalError{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", c.url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if err := c.checkResponse(resp); err != nil {
		return false, err
	}
	r := newSSEReader(resp.Body)
	// The gateway's first bytes come once its watch is set up: from then
	// on no change is missed, which is worth saying.
	if _, err := r.r.Peek(1); err != nil {
		return false, fmt.Errorf("the stream broke before it began: %w", err)
	}
	if c.reconnect {
		c.notice("reconnected to %s", c.url)
	} else {
		c.notice("following %s", c.url)
	}
	c.reconnect = true
	for {
		ev, err := r.next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("the stream ended")
			} else {
				err = fmt.Errorf("the stream broke: %w", err)
			}
			return delivered, err
		}
		delivered = true
		if ev.hasID {
			c.lastID = ev.id
		}
		if err := c.handle(ev); err != nil {
			return delivered, err
		}
	}
}

// checkResponse accepts an event stream and turns anything else into a
// fatal or retryable error with the gateway's own words.
func (c *client) checkResponse(resp *http.Response) error {
	ct := resp.Header.Get("Content-Type")
	switch s := resp.StatusCode; {
	case s == http.StatusOK && strings.HasPrefix(ct, "text/event-stream"):
		return nil
	case s == http.StatusOK:
		return &fatalError{fmt.Errorf("GET %s: 200 with Content-Type %q, not an event stream; check --url and --prefix", c.url, ct)}
	case s >= 500:
		after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &retryError{err: fmt.Errorf("GET %s: %s", c.url, answer(resp)), after: time.Duration(after) * time.Second}
	}
	return &fatalError{fmt.Errorf("GET %s: %s", c.url, answer(resp))}
}

// answer describes an error response: its status and the problem
// document's detail, or the start of whatever body it has.
func answer(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	text := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		text = p.Detail
		if text == "" {
			text = p.Title
		}
	} else if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text == "" {
		return resp.Status
	}
	return resp.Status + ": " + text
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
