// Command caddy is Caddy with its standard modules plus etaggate's, the same
// binary `xcaddy build --with github.com/etaggate/etaggate` produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/etaggate/etaggate"
)

func main() {
	caddycmd.Main()
}
