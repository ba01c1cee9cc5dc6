// Command tokenwarden is the one binary of Tokenwarden: the worker that
// runs link workflows, the gateway that serves tokens, the local dev stack,
// database migrations, and client commands for links and API keys.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tokenwarden keeps OAuth2 tokens alive.

Usage:
  tokenwarden <command> [flags]

Commands:
  dev       run the whole local stack (Temporal, Vault, Postgres, OIDC peer) plus worker and gateway
  worker    run the link workflows and their activities
  gateway   serve the REST API that hands out fresh tokens
  migrate   apply the database migrations
  links     create, inspect, refresh and revoke links through the gateway
  apikey    create, list and revoke API keys
  version   print the version

Run 'tokenwarden <command> -h' for a command's flags. Configuration comes
from flags and TOKENWARDEN_* environment variables (see README.md).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "tokenwarden: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given; try 'tokenwarden dev'")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "worker":
		return runWorker(ctx, rest, stdout, stderr)
	case "gateway":
		return runGateway(ctx, rest, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "links":
		return runLinks(ctx, rest, stdout, stderr)
	case "apikey":
		return runAPIKey(ctx, rest, stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "tokenwarden %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
