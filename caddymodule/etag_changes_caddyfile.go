package caddymodule

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// unmarshalChanges maps the tokens of
//
//	changes <path> {
//	    keepalive       <duration>
//	    batch           <duration>
//	    queue           <n>
//	    history         <n>
//	    max_subscribers <n>
//	}
//
// to a Changes; the block is optional.
func unmarshalChanges(d *caddyfile.Dispenser) (*Changes, error) {
	c := new(Changes)
	if !d.Args(&c.Path) {
		return nil, d.Errf("changes: give the feed's path, such as changes /changes")
	}
	if d.NextArg() {
		return nil, d.Errf("changes: one path, then options in a block")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var val string
		if !d.Args(&val) || d.NextArg() {
			return nil, d.Errf("changes: %s takes one value", opt)
		}
		var err error
		switch opt {
		case "keepalive":
			err = parseDuration(&c.Keepalive, val)
		case "batch":
			err = parseDuration(&c.Batch, val)
		case "queue":
			err = parseCount(&c.Queue, val)
		case "history":
			err = parseCount(&c.History, val)
		case "max_subscribers":
			err = parseCount(&c.MaxSubscribers, val)
		default:
			return nil, d.Errf("changes: unknown option %q (valid: keepalive, batch, queue, history, max_subscribers)", opt)
		}
		if err != nil {
			return nil, d.Errf("changes: %s %q: %v", opt, val, err)
		}
	}
	return c, nil
}
