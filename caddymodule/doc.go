// Package caddymodule adapts etaggate's engines to Caddy.
package caddymodule
