package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/tokenwarden/tokenwarden"
)

const callUsage = `Usage: tokenwarden links call ID METHOD PATH [flags]

Calls the API of the link's provider through the gateway's proxy, which
adds the link's access token: PATH is under the provider's api_base_url
(e.g. companies/42/taxes/reports/ or graphql), with a query if need be.
The provider's answer body goes to stdout; a status of 400 or more exits
non-zero.

  -d BODY     request body; @FILE reads a file, @- stdin (a body starting
              with { or [ is sent as application/json unless -H says otherwise)
  -H 'N: V'   request header (repeatable)
  -i          print the status line and headers before the body
`

// callMethods are the methods the proxy passes.
var callMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// linksCall runs 'tokenwarden links call ID METHOD PATH'.
func linksCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("call", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, callUsage) }
	data := fs.String("d", "", "request body; @FILE reads a file, @- stdin")
	var headers repeated
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	include := fs.Bool("i", false, "print the status line and headers before the body")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return errors.New("usage: tokenwarden links call ID METHOD PATH [-d body] [-H 'Name: value']... [-i]; e.g. tokenwarden links call lnk_... GET companies/42/taxes/reports/")
	}
	id, method, rawPath := pos[0], strings.ToUpper(pos[1]), pos[2]
	g.linkID = id
	if !slices.Contains(callMethods, method) {
		return fmt.Errorf("method %q is not one the proxy passes: %s", pos[1], strings.Join(callMethods, ", "))
	}
	target, err := callPath(rawPath)
	if err != nil {
		return err
	}
	body, err := callBody(*data)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), rd)
	if err != nil {
		return fmt.Errorf("cannot build the request: %w", err)
	}
	if err := callHeaders(req.Header, headers, body); err != nil {
		return err
	}
	resp, err := c.ProxyClient(id).Do(req)
	if err != nil {
		return g.explain(err)
	}
	defer resp.Body.Close()
	if perr := tokenwarden.ProxyError(resp); perr != nil {
		return callHint(g.explain(perr))
	}
	if *include {
		printStatus(stdout, resp)
	}
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return fmt.Errorf("reading the provider's answer: %w", err)
	}
	return callOutcome(resp)
}

// callPath checks PATH: a path (and query) under the provider's API, not
// a URL.
func callPath(raw string) (*url.URL, error) {
	u, err := url.Parse("/" + strings.TrimPrefix(raw, "/"))
	if err != nil || strings.Contains(raw, "://") {
		return nil, fmt.Errorf("PATH %q must be a path under the provider's API (e.g. companies/42/), not a URL", raw)
	}
	return u, nil
}

// callBody reads -d.
func callBody(d string) ([]byte, error) {
	switch {
	case d == "":
		return nil, nil
	case d == "@-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("-d @-: reading stdin: %w", err)
		}
		return b, nil
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, fmt.Errorf("-d %s: %w", d, err)
		}
		return b, nil
	}
	return []byte(d), nil
}

// callHeaders sets the -H headers and, for a JSON-looking body without
// one, Content-Type.
func callHeaders(h http.Header, headers []string, body []byte) error {
	for _, hv := range headers {
		name, value, ok := strings.Cut(hv, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
			return fmt.Errorf("-H %q: want 'Name: value'", name)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	if t := bytes.TrimSpace(body); h.Get("Content-Type") == "" && len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		h.Set("Content-Type", "application/json")
	}
	return nil
}

// printStatus writes the status line and headers, sorted, as curl -i
// does; values are shown terminal-safe.
func printStatus(w io.Writer, resp *http.Response) {
	fmt.Fprintf(w, "%s %s\n", resp.Proto, resp.Status)
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, termSafe(v))
		}
	}
	fmt.Fprintln(w)
}

// callOutcome turns a provider's error status into a non-zero exit,
// saying what the proxy did about a 401.
func callOutcome(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	msg := fmt.Sprintf("the provider answered HTTP %s (link status %s)", resp.Status, termSafe(resp.Header.Get(tokenwarden.HeaderLinkStatus)))
	var hint string
	switch resp.Header.Get(tokenwarden.HeaderProxyRetry) {
	case "retried":
		msg += "; the gateway refreshed the token and retried once"
	case "body_not_replayable":
		hint = "the token was refreshed, but the body was too large to send twice: run the command again"
	case "refresh_failed":
		hint = "the token could not be refreshed; 'tokenwarden links get " + linkIDFrom(resp) + "' shows why"
	case "refresh_throttled":
		hint = "the provider refuses a token refreshed moments ago: check the link's scopes and the provider's permissions"
	}
	return &cliError{msg: msg, hint: hint}
}

func linkIDFrom(resp *http.Response) string {
	// /v1/links/{id}/proxy/...
	if parts := strings.SplitN(strings.TrimPrefix(resp.Request.URL.Path, "/"), "/", 4); len(parts) >= 3 {
		return parts[2]
	}
	return "ID"
}

// callHint adds advice for the proxy's own error codes.
func callHint(err error) error {
	var ce *cliError
	if !errors.As(err, &ce) || ce.hint != "" {
		return err
	}
	switch tokenwarden.ErrorCode(err) {
	case tokenwarden.CodeProxyNotConfigured:
		ce.hint = "the operator sets api_base_url in the provider's catalog entry (providers/<name>/catalog.yaml shows it)"
	case tokenwarden.CodeUpstreamUnavailable:
		ce.hint = "the provider's API did not answer; try again later, or check its api_base_url"
	}
	return err
}
