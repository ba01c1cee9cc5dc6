// Command results writes a file under docs/results: the header (date,
// commit, cores, memory) and a table.
//
//	results -title T -command C -out F header-and-table.md   (copy a table)
//	go test -bench ... | results -bench -title T -command C -out F
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokenwarden/tokenwarden/internal/results"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}

func run() error {
	title := flag.String("title", "", "heading of the table")
	command := flag.String("command", "", "the command that measured it, e.g. make bench")
	out := flag.String("out", "", "file to write, e.g. docs/results/bench.md")
	bench := flag.Bool("bench", false, "standard input is `go test -bench` output (echoed to standard output)")
	flag.Parse()
	if *title == "" || *command == "" || *out == "" {
		return fmt.Errorf("-title, -command and -out are required")
	}
	var table string
	switch {
	case *bench:
		in := io.TeeReader(os.Stdin, os.Stdout)
		t, err := results.BenchTable(in, benchDescriptions)
		if err != nil {
			return err
		}
		table = t
	case flag.NArg() == 1:
		b, err := os.ReadFile(flag.Arg(0))
		if err != nil {
			return err
		}
		table = string(b)
	default:
		return fmt.Errorf("give a table file, or -bench with benchmark output on standard input")
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	doc := results.ThisMachine().Header(*title, *command) + table
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "results: wrote %s\n", *out)
	return nil
}

// benchDescriptions say what each benchmark of bench/ measures.
var benchDescriptions = map[string]string{
	"BenchmarkVaultRead":     "the yardstick: a Vault KV v2 read of the same access token through the gateway's Vault client, 32 readers in parallel",
	"BenchmarkTokenRead":     "GET /v1/links/{id}/token through the gateway, 32 readers in parallel: API key from cache, the token from the gateway's cache (LISTEN/NOTIFY-invalidated), no provider call (checked)",
	"BenchmarkForcedRefresh": "POST /v1/links/{id}/refresh through the gateway, one at a time, until the audit trail has the refresh: a workflow Update, one provider call, one Vault write (checked: one provider call each), the audit record",
}
