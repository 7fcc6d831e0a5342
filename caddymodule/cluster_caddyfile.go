package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("etaggate", parseClusterOption)
}

// UnmarshalCaddyfile maps the global option's tokens to the app's fields;
// Provision fills in the defaults and Validate checks the values. Syntax:
//
//	etaggate {
//	    redis <address> {
//	        password <password>
//	        prefix   <key prefix>
//	        lease    <duration>
//	    }
//	}
func (a *Cluster) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "redis":
			if a.Redis != nil {
				return d.Err("redis is given twice")
			}
			a.Redis = new(RedisConfig)
			if err := a.Redis.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown option %q (valid: redis)", d.Val())
		}
	}
	return nil
}

func (r *RedisConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.Args(&r.Address) {
		return d.Err("redis needs an address: host:port or a redis:// URL")
	}
	if d.NextArg() {
		return d.Err("redis takes one address")
	}
	for d.NextBlock(1) {
		opt := d.Val()
		var val string
		if !d.Args(&val) {
			return d.ArgErr()
		}
		if d.NextArg() {
			return d.Errf("%s takes one value", opt)
		}
		switch opt {
		case "password":
			r.Password = val
		case "prefix":
			r.Prefix = val
		case "lease":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("lease %q: %v", val, err)
			}
			r.Lease = caddy.Duration(dur)
		default:
			return d.Errf("unknown redis option %q (valid: password, prefix, lease)", opt)
		}
	}
	return nil
}

func parseClusterOption(d *caddyfile.Dispenser, _ any) (any, error) {
	a := new(Cluster)
	if err := a.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "etaggate", Value: caddyconfig.JSON(a, nil)}, nil
}

var _ caddyfile.Unmarshaler = (*Cluster)(nil)
