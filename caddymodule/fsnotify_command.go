package caddymodule

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/etaggate/etaggate/notifyclient"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "fs-notify",
		Usage: "--url <gateway> (--path <dir> | --id <file ID>) [--recursive] [--filter <types>] [--prefix <path>] [--json]  |  --url <feed URL> --changes [--filter-prefix <path>] [--filter <types>] [--json]",
		Short: "Prints change notifications of a directory served by fs_notify, or of an etag change feed",
		Long: `
Follows a gateway's fs_notify stream for one directory, as Qumulo's
"qq fs_notify --path /my/directory" does, and prints one line per
notification on stdout: "<type>\t<path>", with the path relative to the
watched directory. With --json each notification object is printed as
received, one per line. Nothing else goes to stdout.

--path names the directory by its absolute path below the gateway's
fs_notify root; --id by its file ID (inode number). --recursive watches the
whole subtree; --filter lists the types wanted (comma-separated or
repeated: child_file_added,child_dir_added,...); --prefix is fs_notify's
URL prefix.

With --changes, --url is the etag change feed itself
(http://localhost:8080/changes), --filter-prefix limits it to paths
starting with a prefix (repeatable), and --filter keeps only the listed
types (resource_created, resource_updated, resource_removed).

When the stream ends or breaks, or the gateway answers 5xx, the client
reconnects with Last-Event-ID, waiting from 250ms up to 5s between
attempts, and says so on stderr; lost notifications ("overflow") are
reported on stderr with their reason, and the stream goes on. A 4xx answer
prints the problem's detail and exits with status 1. SIGINT, SIGTERM and
SIGQUIT exit with status 0, as does the removal of the watched directory.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("url", "", "Base URL of the gateway, or with --changes the change feed's URL (required)")
			cmd.Flags().String("path", "", "Absolute path of the directory to watch, below the fs_notify root")
			cmd.Flags().String("id", "", "File ID (inode number) of the directory to watch")
			cmd.Flags().Bool("recursive", false, "Watch the whole subtree")
			cmd.Flags().StringSlice("filter", nil, "Notification types to print (comma-separated or repeated); default all")
			cmd.Flags().String("prefix", notifyclient.DefaultPrefix, "URL prefix of fs_notify")
			cmd.Flags().Bool("json", false, "Print each notification object as JSON, one per line")
			cmd.Flags().Bool("changes", false, "Follow the etag change feed at --url instead of fs_notify")
			cmd.Flags().StringSlice("filter-prefix", nil, "With --changes: only paths starting with this prefix (repeatable)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdFSNotify)
		},
	})
}

// cmdFSNotify maps the flags to the client and runs it until a signal.
func cmdFSNotify(fl caddycmd.Flags) (int, error) {
	filter, _ := fl.GetStringSlice("filter")
	var prefixes []string
	if fl.Changed("filter-prefix") {
		prefixes, _ = fl.GetStringSlice("filter-prefix")
	}
	prefix := fl.String("prefix")
	if fl.Bool("changes") && !fl.Changed("prefix") {
		prefix = ""
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer stop()
	err := notifyclient.Run(ctx, notifyclient.Options{
		URL:          fl.String("url"),
		Path:         fl.String("path"),
		ID:           fl.String("id"),
		Recursive:    fl.Bool("recursive"),
		Filter:       filter,
		Prefix:       prefix,
		JSON:         fl.Bool("json"),
		Changes:      fl.Bool("changes"),
		FilterPrefix: prefixes,
		Stdout:       os.Stdout,
		Stderr:       os.Stderr,
	})
	if err != nil {
		return 1, err
	}
	return 0, nil
}
