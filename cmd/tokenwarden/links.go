package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokenwarden/tokenwarden"
)

const defaultGatewayURL = "http://127.0.0.1:8080"

const linksUsage = `Usage: tokenwarden links <command> [flags]

Commands:
  create   --provider P --user U [--grant G] [--scope S]... [--param k=v]...
           [--username U --password-stdin] [--return-url URL] [--idempotency-key K]
  get      ID                      the link, its next step and its recent events
  watch    ID [--interval 2s]      follows the link live (new events, next steps) until Ctrl-C
  list     [--provider P] [--status S] [--user U] [--limit N] [--cursor C]
  token    ID [--min-ttl 30s]      prints only the access token, for
                                   curl -H "Authorization: Bearer $(tokenwarden links token ID)"
  refresh  ID
  revoke   ID [--reason R]
  events   ID [--limit N] [--cursor C]   the link's audit trail, oldest first

Every command takes:
  --gateway URL   gateway to talk to (TOKENWARDEN_GATEWAY, default ` + defaultGatewayURL + `)
  --api-key KEY   API key (TOKENWARDEN_API_KEY; prefer the variable: flags show in ps)
  --json          print the gateway's JSON answer instead of a table

Run 'tokenwarden links <command> -h' for a command's flags.
`

// stdin is where --password-stdin reads; a variable so tests can feed it.
var stdin io.Reader = os.Stdin

// runLinks runs 'tokenwarden links ...': the gateway's link API from the
// command line.
func runLinks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, linksUsage)
		return errors.New("no links command given; try 'tokenwarden links list'")
	}
	cmd, rest := args[0], args[1:]
	var run func(context.Context, []string, io.Writer, io.Writer) error
	switch cmd {
	case "create":
		run = linksCreate
	case "get":
		run = linksGet
	case "watch":
		run = linksWatch
	case "list":
		run = linksList
	case "token":
		run = linksToken
	case "refresh":
		run = linksRefresh
	case "revoke":
		run = linksRevoke
	case "events":
		run = linksEvents
	case "call":
		run = linksCall
	case "help", "-h", "--help":
		fmt.Fprint(stdout, linksUsage)
		return nil
	default:
		fmt.Fprint(stderr, linksUsage)
		return fmt.Errorf("unknown links command %q", cmd)
	}
	return run(ctx, rest, stdout, stderr)
}

// gatewayFlags are the flags every links command shares.
type gatewayFlags struct {
	url    string
	apiKey string
	json   bool
	// linkID, when the command has one, makes hints concrete.
	linkID string
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "gateway", env("TOKENWARDEN_GATEWAY", defaultGatewayURL), "gateway URL (TOKENWARDEN_GATEWAY)")
	fs.StringVar(&g.apiKey, "api-key", "", "API key (default $TOKENWARDEN_API_KEY; prefer the variable, flags show in ps)")
	fs.BoolVar(&g.json, "json", false, "print the gateway's JSON answer")
}

// client checks the flags and returns a client for them.
func (g *gatewayFlags) client() (*tokenwarden.Client, error) {
	key := g.apiKey
	if key == "" {
		key = os.Getenv("TOKENWARDEN_API_KEY")
	}
	if key == "" {
		return nil, errors.New("no API key: set TOKENWARDEN_API_KEY or pass --api-key " +
			"(create one with 'tokenwarden apikey create --tenant default --name cli')")
	}
	u, err := url.Parse(g.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gateway URL %q is not an http(s) URL: set TOKENWARDEN_GATEWAY or pass --gateway, e.g. %s", g.url, defaultGatewayURL)
	}
	return tokenwarden.NewClient(g.url, key), nil
}

// call sends one request and returns the gateway's JSON answer as it is;
// errors come back with a hint of what to do.
func (g *gatewayFlags) call(ctx context.Context, method, path string, body any, header http.Header) (json.RawMessage, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	var raw json.RawMessage
	if err := c.Do(req, &raw); err != nil {
		return nil, g.explain(err)
	}
	return raw, nil
}

// cliError is an error with advice on what to do about it. Its message
// has the advice on a line of its own.
type cliError struct {
	msg  string
	hint string
	err  error
}

func (e *cliError) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + "\nhint: " + e.hint
}

func (e *cliError) Unwrap() error { return e.err }

// explain turns a client error into "<message> (<code>)" plus a hint.
func (g *gatewayFlags) explain(err error) error {
	var apiErr *tokenwarden.APIError
	if !errors.As(err, &apiErr) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return &cliError{
			msg:  fmt.Sprintf("cannot reach the gateway at %s: %s", g.url, strings.TrimPrefix(err.Error(), "tokenwarden: ")),
			hint: "is it running ('tokenwarden dev' starts one)? Set TOKENWARDEN_GATEWAY or pass --gateway to use another",
			err:  err,
		}
	}
	msg := termSafe(apiErr.Message)
	if msg == "" {
		msg = strings.ToLower(http.StatusText(apiErr.Status))
	}
	msg = fmt.Sprintf("%s (%s)", msg, apiErr.Code)
	if apiErr.RequestID != "" && apiErr.Code == tokenwarden.CodeInternal {
		msg += " [request " + apiErr.RequestID + "]"
	}
	hint := hintFor(apiErr.Code)
	if g.linkID != "" {
		hint = strings.ReplaceAll(hint, "{id}", g.linkID)
		hint = strings.ReplaceAll(hint, " ID'", " "+g.linkID+"'")
	}
	return &cliError{msg: msg, hint: hint, err: err}
}

func hintFor(code string) string {
	switch code {
	case tokenwarden.CodeUnauthorized:
		return "check TOKENWARDEN_API_KEY (or --api-key); 'tokenwarden apikey create --tenant default --name cli' makes a new key"
	case tokenwarden.CodeNotFound:
		return "'tokenwarden links list' shows the links this API key can see"
	case tokenwarden.CodeUnknownProvider:
		return "GET /v1/providers on the gateway lists the providers it knows"
	case tokenwarden.CodeUnsupportedGrant:
		return "pass a --grant that the provider lists (GET /v1/providers)"
	case tokenwarden.CodeBadRequest, tokenwarden.CodeInvalidJSON, tokenwarden.CodeUnknownField:
		return "check the flags; 'tokenwarden links <command> -h' lists them"
	case tokenwarden.CodeLinkRevoked:
		return "a revoked link stays revoked; create a new one with 'tokenwarden links create'"
	case tokenwarden.CodeReauthRequired:
		return "the end-user must authorise again: POST /v1/links/{id}/reauthorize on the gateway starts that"
	case tokenwarden.CodeLinkPending:
		return "the link has no token yet; 'tokenwarden links get ID' shows whether it waits for the end-user"
	case tokenwarden.CodeLinkFailed:
		return "'tokenwarden links get ID' shows last_error; create a new link once the cause is fixed"
	case tokenwarden.CodeRateLimited:
		return "wait a few seconds and try again"
	case tokenwarden.CodeUnavailable, tokenwarden.CodeRefreshFailed:
		return "try again shortly; the gateway's /readyz shows which dependency is down"
	case tokenwarden.CodeConflict:
		return "an Idempotency-Key is reused for a different request, or the link's state does not allow this; use a new --idempotency-key or check 'tokenwarden links get ID'"
	case tokenwarden.CodeBodyTooLarge:
		return "send fewer or shorter scopes and params"
	}
	return ""
}

// parseArgs parses flags that may come before or after positional
// arguments ('links get ID --json' as well as 'links get --json ID'),
// which flag.Parse alone does not allow.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// After "--" everything is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// linkIDArg parses a command that takes exactly one link id.
func linkIDArg(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return "", fmt.Errorf("usage: tokenwarden links %s ID [flags]: give exactly one link id ('tokenwarden links list' shows them)", fs.Name())
	}
	return pos[0], nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// keyValues is a repeatable k=v flag.
type keyValues map[string]string

func (kv keyValues) String() string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k+"="+kv[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (kv keyValues) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	kv[k] = val
	return nil
}

func linksCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("create", stderr)
	var (
		req           tokenwarden.CreateLinkRequest
		scopes        repeated
		params        = keyValues{}
		username      string
		passwordStdin bool
		idemKey       string
	)
	fs.StringVar(&req.Provider, "provider", "", "provider name from the gateway's catalog (required)")
	fs.StringVar(&req.UserID, "user", "", "your reference for the user (required)")
	fs.StringVar(&req.Grant, "grant", "", "authorization_code, client_credentials, password or device_code (default: password with --password-stdin, else the provider's only grant)")
	fs.Var(&scopes, "scope", "scope to request; repeat for more (default: the provider's)")
	fs.Var(params, "param", "extra parameter key=value the provider allows; repeat for more")
	fs.StringVar(&username, "username", "", "resource owner's username, for the password grant")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the resource owner's password from standard input (first line)")
	fs.StringVar(&req.ReturnURL, "return-url", "", "where the end-user's browser goes after authorising")
	fs.StringVar(&idemKey, "idempotency-key", "", "makes retrying this command safe: a repeat returns the same link")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("links create takes no arguments, got %q; did you mean --provider or --user?", pos[0])
	case req.Provider == "" || req.UserID == "":
		return errors.New("links create needs --provider and --user, e.g. --provider acme --user alice")
	case passwordStdin && username == "":
		return errors.New("--password-stdin needs --username too")
	case username != "" && !passwordStdin:
		return errors.New("--username needs --password-stdin (the password is read from standard input, never from a flag)")
	}
	req.Scopes = scopes
	if len(params) > 0 {
		req.Params = params
	}
	if passwordStdin {
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		req.Credentials = &tokenwarden.Credentials{Username: username, Password: pw}
		if req.Grant == "" {
			req.Grant = tokenwarden.GrantPassword
		}
	}
	if req.Grant == "" {
		if req.Grant, err = g.onlyGrant(ctx, req.Provider); err != nil {
			return err
		}
	}
	var header http.Header
	if idemKey != "" {
		header = http.Header{"Idempotency-Key": {idemKey}}
	}
	var l tokenwarden.Link
	if printed, err := g.fetch(ctx, stdout, http.MethodPost, "/v1/links", req, header, &l); printed || err != nil {
		return err
	}
	tw := newTable(stdout)
	fmt.Fprintf(tw, "id\t%s\n", l.ID)
	fmt.Fprintf(tw, "status\t%s\n", l.Status)
	fmt.Fprintf(tw, "provider\t%s\n", l.Provider)
	fmt.Fprintf(tw, "user\t%s\n", l.UserID)
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.AuthorizationURL != "" {
		fmt.Fprintf(stdout, "\nSend the end-user's browser to:\n  %s\n", l.AuthorizationURL)
	}
	if d := l.Device; d != nil {
		fmt.Fprintf(stdout, "\nOn any device, the end-user opens %s and enters the code %s", d.VerificationURI, d.UserCode)
		if !d.ExpiresAt.IsZero() {
			fmt.Fprintf(stdout, " (valid until %s)", formatTime(d.ExpiresAt))
		}
		fmt.Fprintln(stdout)
		if d.VerificationURIComplete != "" {
			fmt.Fprintf(stdout, "or opens %s\n", d.VerificationURIComplete)
		}
	}
	return nil
}

// onlyGrant returns the provider's grant when it offers exactly one, so
// that --grant can be left out for the common single-grant provider.
func (g *gatewayFlags) onlyGrant(ctx context.Context, provider string) (string, error) {
	raw, err := g.call(ctx, http.MethodGet, "/v1/providers", nil, nil)
	if err != nil {
		return "", err
	}
	var catalog struct {
		Providers []tokenwarden.Provider `json:"providers"`
	}
	if err := decode(raw, &catalog); err != nil {
		return "", err
	}
	var names []string
	for _, p := range catalog.Providers {
		if p.Name != provider {
			names = append(names, p.Name)
			continue
		}
		if len(p.Grants) == 1 {
			return p.Grants[0], nil
		}
		return "", fmt.Errorf("provider %s offers the grants %s: choose one with --grant", provider, strings.Join(p.Grants, ", "))
	}
	hint := "the gateway's provider catalog is empty"
	if len(names) > 0 {
		hint = "known providers: " + strings.Join(names, ", ")
	}
	return "", &cliError{
		msg:  fmt.Sprintf("the gateway has no provider %q (%s)", provider, tokenwarden.CodeUnknownProvider),
		hint: hint,
	}
}

// readPassword reads the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("--password-stdin: standard input is empty; pipe the password in, e.g. printf %s \"$PW\" | tokenwarden links create --password-stdin")
	}
	return pw, nil
}

func linksGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("get", stderr)
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	path := "/v1/links/" + url.PathEscape(id)
	if !g.json {
		// The workflow's own view knows the next step (--json keeps
		// the stored link only).
		path += "?live=1"
	}
	var ll linkLive
	if printed, err := g.fetch(ctx, stdout, http.MethodGet, path, nil, nil, &ll); printed || err != nil {
		return err
	}
	// Status, expiry and next refresh as the workflow has them now.
	l, _ := ll.current()
	tw := newTable(stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, termSafe(v)) }
	row("id", l.ID)
	row("provider", l.Provider)
	row("user", l.UserID)
	row("grant", l.Grant)
	row("status", l.Status)
	row("scopes", strings.Join(l.Scopes, " "))
	row("expires", formatTime(l.ExpiresAt))
	row("refresh expires", formatTime(l.RefreshExpiresAt))
	row("next refresh", formatTime(l.NextRefreshAt))
	row("refreshes", strconv.Itoa(l.RefreshCount))
	if l.LastError != "" {
		row("last error", l.LastError)
	}
	if len(l.Metadata) > 0 {
		keys := make([]string, 0, len(l.Metadata))
		for k := range l.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			label := ""
			if i == 0 {
				label = "metadata"
			}
			row(label, fmt.Sprintf("%s=%v", k, l.Metadata[k]))
		}
	}
	row("created", formatTime(l.CreatedAt))
	row("updated", formatTime(l.UpdatedAt))
	if err := tw.Flush(); err != nil {
		return err
	}
	return g.printLifecycle(ctx, stdout, ll)
}

func linksList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("list", stderr)
	var opts tokenwarden.ListOptions
	fs.StringVar(&opts.Provider, "provider", "", "only links at this provider")
	fs.StringVar(&opts.Status, "status", "", "only links in this status (active, pending_authorization, reauth_required, ...)")
	fs.StringVar(&opts.UserID, "user", "", "only links of this user")
	fs.IntVar(&opts.Limit, "limit", 0, "page size (default: the gateway's, 50)")
	fs.StringVar(&opts.Cursor, "cursor", "", "next page, as printed after the previous one")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("links list takes no arguments, got %q; filter with --provider, --status or --user", pos[0])
	}
	if opts.Limit < 0 {
		return errors.New("--limit must be positive")
	}
	q := url.Values{}
	for k, v := range map[string]string{"provider": opts.Provider, "status": opts.Status, "user_id": opts.UserID, "cursor": opts.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	path := "/v1/links"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var page tokenwarden.LinkPage
	if printed, err := g.fetch(ctx, stdout, http.MethodGet, path, nil, nil, &page); printed || err != nil {
		return err
	}
	if len(page.Links) == 0 && opts.Cursor == "" {
		fmt.Fprintln(stderr, "no links")
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tPROVIDER\tUSER\tGRANT\tSTATUS\tEXPIRES")
	for _, l := range page.Links {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", termSafe(l.ID), termSafe(l.Provider), termSafe(l.UserID),
			termSafe(l.Grant), termSafe(l.Status), formatTime(l.ExpiresAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		// On stderr, so that stdout stays a clean table for scripts.
		fmt.Fprintf(stderr, "more: tokenwarden links list --cursor %s (with the same filters)\n", page.NextCursor)
	}
	return nil
}

func linksToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("token", stderr)
	minTTL := fs.Duration("min-ttl", 30*time.Second, "the token must stay valid at least this long (the gateway refreshes first if not)")
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	if *minTTL < 0 {
		return errors.New("--min-ttl must not be negative")
	}
	path := "/v1/links/" + url.PathEscape(id) + "/token"
	if *minTTL > 0 {
		secs := int64((*minTTL + time.Second - 1) / time.Second)
		path += "?min_ttl=" + strconv.FormatInt(secs, 10)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if printed, err := g.fetch(ctx, stdout, http.MethodGet, path, nil, nil, &tok); printed || err != nil {
		return err
	}
	if tok.AccessToken == "" {
		return errors.New("the gateway answered without an access token")
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}

func linksRefresh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("refresh", stderr)
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	var r tokenwarden.RefreshResult
	if printed, err := g.fetch(ctx, stdout, http.MethodPost, "/v1/links/"+url.PathEscape(id)+"/refresh", nil, nil, &r); printed || err != nil {
		return err
	}
	tw := newTable(stdout)
	fmt.Fprintf(tw, "id\t%s\n", id)
	fmt.Fprintf(tw, "refreshed\tyes\n")
	fmt.Fprintf(tw, "expires\t%s\n", formatTime(r.ExpiresAt))
	fmt.Fprintf(tw, "vault version\t%d\n", r.VaultVersion)
	return tw.Flush()
}

func linksRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("revoke", stderr)
	reason := fs.String("reason", "", "why, for the audit trail")
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	var body any
	if *reason != "" {
		body = map[string]string{"reason": *reason}
	}
	var r struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if printed, err := g.fetch(ctx, stdout, http.MethodPost, "/v1/links/"+url.PathEscape(id)+"/revoke", body, nil, &r); printed || err != nil {
		return err
	}
	if r.ID == "" {
		r.ID = id
	}
	_, err = fmt.Fprintf(stdout, "link %s %s\n", r.ID, r.Status)
	return err
}

func linksEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, g := newLinksCommand("events", stderr)
	limit := fs.Int("limit", 0, "page size (default: the gateway's, 50)")
	cursor := fs.String("cursor", "", "next page, as printed after the previous one")
	id, err := g.parseLinkID(fs, args)
	if err != nil {
		return err
	}
	if *limit < 0 {
		return errors.New("--limit must be positive")
	}
	q := url.Values{}
	if *cursor != "" {
		q.Set("cursor", *cursor)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	path := "/v1/links/" + url.PathEscape(id) + "/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var page tokenwarden.EventPage
	if printed, err := g.fetch(ctx, stdout, http.MethodGet, path, nil, nil, &page); printed || err != nil {
		return err
	}
	if len(page.Events) == 0 && *cursor == "" {
		fmt.Fprintln(stderr, "no events yet")
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "OCCURRED\tTYPE\tFROM\tTO\tDETAIL")
	for _, e := range page.Events {
		from, to := e.FromStatus, e.ToStatus
		if from == "" {
			from = "-"
		}
		if to == "" {
			to = "-"
		}
		detail, _ := e.Detail["message"].(string)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.OccurredAt.UTC().Format(time.RFC3339), termSafe(e.Type),
			termSafe(from), termSafe(to), termSafe(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		// On stderr, so that stdout stays a clean table for scripts.
		fmt.Fprintf(stderr, "more: tokenwarden links events %s --cursor %s\n", id, page.NextCursor)
	}
	return nil
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// printJSON prints the gateway's answer indented, its content unchanged.
func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func decode(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		// The answer is not quoted: on the token route it holds a secret.
		return fmt.Errorf("the gateway's answer is not what this version of the CLI expects (%v); try --json", err)
	}
	return nil
}

// formatTime shows t in UTC with how far away it is; "-" for none.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(time.Until(t)) + ")"
}

func relative(d time.Duration) string {
	suffix := "from now"
	if d < 0 {
		d, suffix = -d, "ago"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds %s", int(d.Round(time.Second)/time.Second), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm %s", int(d.Round(time.Minute)/time.Minute), suffix)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm %s", int(d/time.Hour), int(d%time.Hour/time.Minute), suffix)
	}
	return fmt.Sprintf("%dd %s", int(d/(24*time.Hour)), suffix)
}

// termSafe makes text from the gateway (which may carry what a provider
// or an end-user's browser sent) safe for a terminal: control characters,
// escapes included, and invalid UTF-8 are shown as Go escapes (\x1b,
// \n), so they can neither move the cursor, recolour the screen nor forge
// a table row.
func termSafe(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\t' || !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
