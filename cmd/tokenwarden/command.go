package main

import (
	"context"
	"flag"
	"io"
	"net/http"
)

// newLinksCommand is the flag set of the links command name, with the
// flags every links command shares already registered.
func newLinksCommand(name string, stderr io.Writer) (*flag.FlagSet, *gatewayFlags) {
	fs := newFlagSet(name, stderr)
	g := &gatewayFlags{}
	g.register(fs)
	return fs, g
}

// parseLinkID parses a command that takes exactly one link id and keeps
// the id for concrete hints.
func (g *gatewayFlags) parseLinkID(fs *flag.FlagSet, args []string) (string, error) {
	id, err := linkIDArg(fs, args)
	if err != nil {
		return "", err
	}
	g.linkID = id
	return id, nil
}

// fetch sends one request. With --json it prints the gateway's answer as
// it is and reports printed; otherwise it decodes the answer into v for
// the caller to print.
func (g *gatewayFlags) fetch(ctx context.Context, stdout io.Writer, method, path string, body any, header http.Header, v any) (printed bool, err error) {
	raw, err := g.call(ctx, method, path, body, header)
	if err != nil {
		return false, err
	}
	if g.json {
		return true, printJSON(stdout, raw)
	}
	return false, decode(raw, v)
}
