// Command teststack runs a devstack in the foreground until interrupted:
// `make test` starts it in the background with the test ports and waits for
// <dir>/stack.json; `teststack -stop -dir X` ends a stack left behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "teststack:", err)
		os.Exit(1)
	}
}

func run() error {
	home, _ := os.UserHomeDir()
	dir := flag.String("dir", ".test-stack", "state folder")
	ports := flag.String("ports", "test", "port set: test, dev or scale")
	bin := flag.String("bin", filepath.Join(home, ".cache", "tokenwarden", "bin"), "folder with the temporal and vault binaries (deployments/dev/tools.sh)")
	namespace := flag.String("namespace", "tokenwarden", "Temporal namespace")
	codec := flag.String("ui-codec-endpoint", "", "Temporal UI remote codec endpoint")
	stop := flag.Bool("stop", false, "stop the stack recorded in -dir and exit")
	server := flag.Bool("temporal-server", false, "run the real Temporal server on PostgreSQL instead of the CLI's dev server (deployments/dev/server-tools.sh builds it)")
	flag.Parse()

	if *stop {
		return devstack.StopDir(*dir, os.Stderr)
	}
	var p devstack.Ports
	switch *ports {
	case "test":
		p = devstack.TestPorts
	case "dev":
		p = devstack.DevPorts
	case "scale":
		p = devstack.ScalePorts
	default:
		return fmt.Errorf("-ports: want test, dev or scale, got %q", *ports)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stack, err := devstack.Start(ctx, devstack.Options{
		Dir:             *dir,
		BinDir:          *bin,
		Ports:           p,
		Namespace:       *namespace,
		UICodecEndpoint: *codec,
		TemporalServer:  *server,
		Log:             prefixed{},
	})
	if err != nil {
		return err
	}
	info := stack.Info()
	fmt.Fprintf(os.Stderr, "teststack: up; Temporal %s (UI %s), Vault %s, Postgres %s; details in %s\n",
		info.TemporalAddress, info.TemporalUIURL, info.VaultAddress, info.PostgresURL, filepath.Join(info.Dir, "stack.json"))

	died := make(chan error, 1)
	go func() { died <- stack.Wait() }()
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "teststack: stopping")
		return stack.Stop()
	case err := <-died:
		return errors.Join(err, stack.Stop())
	}
}

// prefixed writes progress lines to stderr as they come.
type prefixed struct{}

func (prefixed) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprint(os.Stderr, "  ", line)
		}
	}
	return len(b), nil
}
