// Command demo is the quick start: it serves the demo legacy API (an
// in-memory JSON store that knows nothing of ETags) and runs Caddy, with
// etaggate's modules, from Caddyfile.example in front of it, all in one
// process. From the repository root:
//
//	go run ./cmd/demo
//
// Ctrl-C stops both. Flags:
//
//	-api     address of the legacy API (default 127.0.0.1:9080; the
//	         Caddyfile's reverse_proxy must point at it)
//	-config  the Caddyfile (default Caddyfile.example)
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/etaggate/etaggate"
	"github.com/etaggate/etaggate/internal/legacyapi"
)

func main() {
	d, err := prepare(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	// Caddy takes over from here: it traps Ctrl-C, stops gracefully and
	// exits the process, which ends the API server with it.
	os.Args = append([]string{os.Args[0]}, d.caddyArgs...)
	caddycmd.Main()
}

// demo is what prepare set up: the legacy API, running, and the gateway's
// configuration, to be run by Caddy.
type demo struct {
	caddyArgs []string // Caddy's command line: run the Caddyfile
	adapted   []byte   // the same configuration as Caddy JSON
	api       *http.Server
}

// prepare parses the flags, checks and adapts the Caddyfile, creates the
// directories its fs_notify handlers watch and starts the legacy API.
func prepare(args []string, stderr io.Writer) (*demo, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiAddr := fs.String("api", "127.0.0.1:9080", "listen address of the demo legacy API")
	config := fs.String("config", "Caddyfile.example", "Caddyfile to run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q; the flags are -api and -config", fs.Args())
	}

	body, err := os.ReadFile(*config)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: run this from the repository root (go run ./cmd/demo) or pass -config", *config)
	}
	if err != nil {
		return nil, err
	}
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": *config})
	if err != nil {
		return nil, fmt.Errorf("adapting %s: %w", *config, err)
	}
	for _, w := range warnings {
		log.Printf("%s:%d: %s", *config, w.Line, w.Message)
	}
	gateway, roots, err := inspect(adapted)
	if err != nil {
		return nil, fmt.Errorf("reading the adapted %s: %w", *config, err)
	}
	for _, root := range roots {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("creating fs_notify root: %w", err)
		}
	}
	if !strings.Contains(string(adapted), `"`+*apiAddr+`"`) {
		log.Printf("warning: %s does not proxy to %s; the gateway will not reach the demo API", *config, *apiAddr)
	}

	ln, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		return nil, fmt.Errorf("starting the legacy API: %w (is another demo running? pass -api to move it)", err)
	}
	api := &http.Server{
		Handler:           legacyapi.New(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("legacy API stopped: %v", err)
		}
	}()

	log.Printf("legacy API on http://%s; etaggate gateway on %s (%s); Ctrl-C stops both",
		ln.Addr(), strings.Join(gateway, ", "), *config)
	if len(gateway) > 0 && strings.Contains(string(adapted), `"/ui/*"`) {
		log.Printf("demo page: open %s/ui/ in two tabs and edit the same item in both", gateway[0])
	}
	return &demo{
		caddyArgs: []string{"run", "--config", *config, "--adapter", "caddyfile"},
		adapted:   adapted,
		api:       api,
	}, nil
}

// inspect reads adapted Caddy JSON for the URLs its HTTP servers listen on
// and the root directories of its fs_notify handlers.
func inspect(adapted []byte) (urls, roots []string, err error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		return nil, nil, err
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, l := range srv.Listen {
			addr, err := caddy.ParseNetworkAddress(l)
			if err != nil {
				return nil, nil, fmt.Errorf("listen address %q: %w", l, err)
			}
			host := addr.Host
			if host == "" {
				host = "localhost"
			}
			scheme := "http"
			if addr.StartPort == 443 {
				scheme = "https"
			}
			urls = append(urls, fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, fmt.Sprint(addr.StartPort))))
		}
	}
	sort.Strings(urls)

	var all any
	if err := json.Unmarshal(adapted, &all); err != nil {
		return nil, nil, err
	}
	walk(all, func(m map[string]any) {
		if m["handler"] == "fs_notify" {
			if root, ok := m["root"].(string); ok && root != "" {
				roots = append(roots, root)
			}
		}
	})
	return urls, roots, nil
}

// walk calls fn on every JSON object inside v.
func walk(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, e := range v {
			walk(e, fn)
		}
	case []any:
		for _, e := range v {
			walk(e, fn)
		}
	}
}
