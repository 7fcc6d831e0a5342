package caddymodule

import (
	"errors"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// UnmarshalCaddyfile maps the directive's tokens to the module's fields;
// Provision fills in the defaults and Validate checks the values. Syntax:
//
//	fs_notify [<matcher>] {
//	    root            <dir>
//	    prefix          <path>
//	    keepalive       <duration>
//	    batch           <duration>
//	    queue           <n>
//	    history         <n>
//	    max_subscribers <n>
//	}
func (m *FSNotify) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var val string
		if !d.Args(&val) {
			return d.ArgErr()
		}
		if d.NextArg() {
			return d.Errf("%s takes one value", opt)
		}
		var err error
		switch opt {
		case "root":
			m.Root = val
		case "prefix":
			m.Prefix = val
		case "keepalive":
			err = parseDuration(&m.Keepalive, val)
		case "batch":
			err = parseDuration(&m.Batch, val)
		case "queue":
			err = parseCount(&m.Queue, val)
		case "history":
			err = parseCount(&m.History, val)
		case "max_subscribers":
			err = parseCount(&m.MaxSubscribers, val)
		default:
			return d.Errf("unknown option %q (valid: root, prefix, keepalive, batch, queue, history, max_subscribers)", opt)
		}
		if err != nil {
			return d.Errf("%s %q: %v", opt, val, err)
		}
	}
	return nil
}

func parseDuration(dst *caddy.Duration, s string) error {
	d, err := caddy.ParseDuration(s)
	*dst = caddy.Duration(d)
	return err
}

func parseCount(dst *int, s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a whole number")
	}
	*dst = n
	return nil
}

func parseFSNotify(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(FSNotify)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

var _ caddyfile.Unmarshaler = (*FSNotify)(nil)
