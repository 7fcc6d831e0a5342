package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

// UnmarshalCaddyfile maps the directive's tokens to the module's fields;
// Provision fills in the defaults and Validate checks the values. A size or
// a duration of zero is refused here, since zero is how a field says
// "default". Syntax:
//
//	etag [<matcher>] {
//	    hash          xxh3 | sha256 | blake3
//	    methods       <method...>
//	    require_precondition [<method...>]
//	    verify        upstream | cache
//	    revalidate    upstream | cache
//	    max_body      <size>
//	    cache_size    <size>
//	    ttl           <duration>
//	    key           <placeholder template>
//	    vary          [<header...>]
//	    upstream_etag keep | replace
//	    etag_after_write on | off
//	    lock_wait     <duration>
//	    check_timeout <duration>
//	    buffer_memory <size>
//	    json_ignore   <pointer...>
//	    json_only     <pointer...>
//	    changes       <path> {
//	        keepalive       <duration>
//	        batch           <duration>
//	        queue           <n>
//	        history         <n>
//	        max_subscribers <n>
//	    }
//	}
func (e *ETag) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "hash", "verify", "revalidate", "key", "upstream_etag":
			if !d.NextArg() {
				return optionArgErr(d, opt)
			}
			v := d.Val()
			if d.NextArg() {
				return optionArgErr(d, opt)
			}
			switch opt {
			case "hash":
				e.Hash = v
			case "verify":
				e.Verify = v
			case "revalidate":
				e.Revalidate = v
			case "key":
				e.Key = v
			case "upstream_etag":
				e.UpstreamETag = v
			}
		case "changes":
			c, err := unmarshalChanges(d)
			if err != nil {
				return err
			}
			e.Changes = c
		case "methods":
			e.Methods = d.RemainingArgs()
			if len(e.Methods) == 0 {
				return d.Errf("methods: list at least one method, such as PUT PATCH DELETE")
			}
		case "json_ignore", "json_only":
			ptrs := d.RemainingArgs()
			if len(ptrs) == 0 {
				return d.Errf("%s: list at least one JSON pointer, such as /generated_at", opt)
			}
			if opt == "json_ignore" {
				e.JSONIgnore = append(e.JSONIgnore, ptrs...)
			} else {
				e.JSONOnly = append(e.JSONOnly, ptrs...)
			}
		case "vary":
			// Not nil: an empty list must survive the trip through JSON.
			vary := append([]string{}, d.RemainingArgs()...)
			e.Vary = &vary
		case "require_precondition":
			if methods := d.RemainingArgs(); len(methods) > 0 {
				e.RequirePreconditionMethods = methods
			} else {
				e.RequirePrecondition = true
			}
		case "max_body", "cache_size", "buffer_memory":
			if !d.NextArg() {
				return optionArgErr(d, opt)
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 1<<62 {
				return d.Errf("%s: %q is not a size such as 16MiB", opt, d.Val())
			}
			if d.NextArg() {
				return optionArgErr(d, opt)
			}
			switch opt {
			case "max_body":
				e.MaxBody = int64(n)
			case "cache_size":
				e.CacheSize = int64(n)
			default:
				e.BufferMemory = int64(n)
			}
		case "ttl", "lock_wait", "check_timeout":
			if !d.NextArg() {
				return optionArgErr(d, opt)
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("%s: %q is not a positive duration such as 10s", opt, d.Val())
			}
			if d.NextArg() {
				return optionArgErr(d, opt)
			}
			switch opt {
			case "ttl":
				e.TTL = caddy.Duration(dur)
			case "lock_wait":
				e.LockWait = caddy.Duration(dur)
			default:
				e.CheckTimeout = caddy.Duration(dur)
			}
		case "etag_after_write":
			if !d.NextArg() {
				return optionArgErr(d, opt)
			}
			var on bool
			switch d.Val() {
			case "on":
				on = true
			case "off":
			default:
				return d.Errf("etag_after_write: unknown value %q: use on or off", d.Val())
			}
			if d.NextArg() {
				return optionArgErr(d, opt)
			}
			e.ETagAfterWrite = &on
		default:
			return d.Errf("unknown etag option %q; valid options: %s", opt, strings.Join(etagOptions, ", "))
		}
	}
	return nil
}

var etagOptions = []string{"hash", "methods", "require_precondition", "verify", "revalidate", "max_body", "cache_size", "ttl", "key", "vary", "upstream_etag", "etag_after_write", "lock_wait", "check_timeout", "buffer_memory", "json_ignore", "json_only", "changes"}

// etagUsage shows the arguments of each option, for errors about their count.
var etagUsage = map[string]string{
	"hash":                 "hash xxh3 | sha256 | blake3",
	"require_precondition": "require_precondition [<method...>]",
	"verify":               "verify upstream | cache",
	"revalidate":           "revalidate upstream | cache",
	"max_body":             "max_body <size>",
	"cache_size":           "cache_size <size>",
	"ttl":                  "ttl <duration>",
	"key":                  "key <placeholder template>",
	"upstream_etag":        "upstream_etag keep | replace",
	"etag_after_write":     "etag_after_write on | off",
	"lock_wait":            "lock_wait <duration>",
	"check_timeout":        "check_timeout <duration>",
	"buffer_memory":        "buffer_memory <size>",
}

// optionArgErr reports a wrong number of arguments, naming the option.
func optionArgErr(d *caddyfile.Dispenser, opt string) error {
	return d.Errf("%s: wrong number of arguments; use %s", opt, etagUsage[opt])
}

func parseETagCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	e := new(ETag)
	err := e.UnmarshalCaddyfile(h.Dispenser)
	return e, err
}

var _ caddyfile.Unmarshaler = (*ETag)(nil)
