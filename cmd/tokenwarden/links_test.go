package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	cliTestKey   = "tw_cli-test-key-0123456789"
	cliTestToken = "at-cli-secret-token"
)

// fakeGateway answers like the gateway and records the last request.
type fakeGateway struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
}

func newFakeGateway(t *testing.T, routes map[string]http.HandlerFunc) *fakeGateway {
	t.Helper()
	g := &fakeGateway{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.reqs = append(g.reqs, r)
		g.bodies = append(g.bodies, string(b))
		g.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+cliTestKey {
			gatewayError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid API key")
			return
		}
		h, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			gatewayError(w, http.StatusNotFound, "not_found", "no such link")
			return
		}
		h(w, r)
	}))
	t.Cleanup(g.srv.Close)
	t.Setenv("TOKENWARDEN_GATEWAY", g.srv.URL)
	t.Setenv("TOKENWARDEN_API_KEY", cliTestKey)
	return g
}

func (g *fakeGateway) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	require.NotEmpty(t, g.reqs, "no request reached the gateway")
	return g.reqs[len(g.reqs)-1], g.bodies[len(g.bodies)-1]
}

func (g *fakeGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.reqs)
}

func gatewayError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg, "request_id": "req-7"}})
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// runCLI runs 'tokenwarden links args...' and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runLinks(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// hasRow reports whether out has a table row of exactly these cells,
// separated by tabwriter's padding.
func hasRow(out string, cells ...string) bool {
	quoted := make([]string, len(cells))
	for i, c := range cells {
		quoted[i] = regexp.QuoteMeta(c)
	}
	return regexp.MustCompile(`(?m)^` + strings.Join(quoted, `\s{2,}`) + `\s*$`).MatchString(out)
}

const linkJSON = `{"id":"lnk_1","provider":"acme","user_id":"alice","grant":"client_credentials","status":"active",
	"scopes":["read","write"],"expires_at":"2030-01-01T00:00:00Z","refresh_expires_at":null,
	"next_refresh_at":"2029-12-31T23:54:00Z","last_error":"","refresh_count":4,"metadata":{"org":"o1"},
	"created_at":"2029-01-01T00:00:00Z","updated_at":"2029-12-31T23:00:00Z"}`

func TestLinksMissingAPIKey(t *testing.T) {
	g := newFakeGateway(t, nil)
	t.Setenv("TOKENWARDEN_API_KEY", "")
	for _, args := range [][]string{{"get", "lnk_1"}, {"list"}, {"token", "lnk_1"}, {"create", "--provider", "p", "--user", "u"}} {
		_, _, err := runCLI(t, args...)
		require.Error(t, err, args)
		assert.Contains(t, err.Error(), "set TOKENWARDEN_API_KEY or pass --api-key", args)
	}
	assert.Zero(t, g.count(), "nothing is sent without a key")

	// --api-key works in its place.
	newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links/lnk_1": answer(200, linkJSON),
		"GET /v1/links/lnk_1/events": answer(200, `{"events":[],"next_cursor":""}`)})
	t.Setenv("TOKENWARDEN_API_KEY", "")
	_, _, err := runCLI(t, "get", "lnk_1", "--api-key", cliTestKey)
	require.NoError(t, err)
}

func TestLinksGetHuman(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links/lnk_1": answer(200, linkJSON),
		"GET /v1/links/lnk_1/events": answer(200, `{"events":[],"next_cursor":""}`)})
	out, _, err := runCLI(t, "get", "lnk_1")
	require.NoError(t, err)
	req, _ := g.last(t)
	assert.Equal(t, http.MethodGet, req.Method)
	assert.True(t, hasRow(out, "id", "lnk_1"), out)
	assert.True(t, hasRow(out, "status", "active"), out)
	assert.True(t, hasRow(out, "scopes", "read write"), out)
	assert.True(t, hasRow(out, "refresh expires", "-"), out)
	assert.True(t, hasRow(out, "refreshes", "4"), out)
	assert.True(t, hasRow(out, "metadata", "org=o1"), out)
	assert.Regexp(t, `(?m)^expires\s+2030-01-01T00:00:00Z \(.* from now\)$`, out)
	assert.NotContains(t, out, "last error", "an empty last_error is not shown")

	// Values line up in one column (the table ends at the first blank
	// line; the next step and the timeline follow).
	table, _, _ := strings.Cut(out, "\n\n")
	col := -1
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		i := strings.Index(line, "  ")
		j := i + len(line[i:]) - len(strings.TrimLeft(line[i:], " "))
		if col == -1 {
			col = j
		}
		assert.Equal(t, col, j, "misaligned: %q", line)
	}
}

func TestLinksGetJSONIsTheGatewaysAnswer(t *testing.T) {
	newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links/lnk_1": answer(200, linkJSON)})
	// Flags may follow the id.
	out, _, err := runCLI(t, "get", "lnk_1", "--json")
	require.NoError(t, err)
	assert.JSONEq(t, linkJSON, out)
	assert.True(t, strings.HasSuffix(out, "}\n"))
}

func TestLinksCreate(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{"POST /v1/links": answer(201,
		`{"id":"lnk_9","status":"pending_authorization","provider":"acme","user_id":"alice","authorization_url":"https://idp.example/auth?state=xyz"}`)})
	stdin = strings.NewReader("s3cret-pw\n")
	t.Cleanup(func() { stdin = strings.NewReader("") })

	out, errOut, err := runCLI(t, "create", "--provider", "acme", "--user", "alice", "--grant", "password",
		"--scope", "read", "--scope", "write", "--param", "audience=api", "--param", "x=a=b",
		"--username", "bob", "--password-stdin", "--return-url", "https://app.example/done", "--idempotency-key", "k1")
	require.NoError(t, err)
	req, body := g.last(t)
	assert.Equal(t, "k1", req.Header.Get("Idempotency-Key"))
	assert.JSONEq(t, `{"provider":"acme","user_id":"alice","grant":"password","scopes":["read","write"],
		"params":{"audience":"api","x":"a=b"},"credentials":{"username":"bob","password":"s3cret-pw"},
		"return_url":"https://app.example/done"}`, body)

	assert.True(t, hasRow(out, "id", "lnk_9"), out)
	assert.True(t, hasRow(out, "status", "pending_authorization"), out)
	assert.Contains(t, out, "https://idp.example/auth?state=xyz")
	assert.NotContains(t, out+errOut, "s3cret-pw")
}

func TestLinksCreateDeviceAndJSON(t *testing.T) {
	const created = `{"id":"lnk_d","status":"pending_authorization","provider":"acme","user_id":"alice",
		"device":{"user_code":"WDJB-MJHT","verification_uri":"https://idp.example/device","expires_at":"2030-01-01T00:10:00Z"}}`
	g := newFakeGateway(t, map[string]http.HandlerFunc{"POST /v1/links": answer(201, created)})
	out, _, err := runCLI(t, "create", "--provider", "acme", "--user", "alice", "--grant", "device_code")
	require.NoError(t, err)
	assert.Contains(t, out, "https://idp.example/device")
	assert.Contains(t, out, "WDJB-MJHT")
	req, body := g.last(t)
	_, has := req.Header["Idempotency-Key"]
	assert.False(t, has)
	assert.JSONEq(t, `{"provider":"acme","user_id":"alice","grant":"device_code"}`, body)

	out, _, err = runCLI(t, "create", "--provider", "acme", "--user", "alice", "--grant", "device_code", "--json")
	require.NoError(t, err)
	assert.JSONEq(t, created, out)
}

func TestLinksCreatePicksTheOnlyGrant(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{
		"GET /v1/providers": answer(200, `{"providers":[
			{"name":"machine","kind":"generic","grants":["client_credentials"]},
			{"name":"acme","kind":"generic","grants":["authorization_code","device_code"]}]}`),
		"POST /v1/links": answer(201, `{"id":"lnk_m","status":"pending_authorization","provider":"machine","user_id":"svc"}`),
	})
	out, _, err := runCLI(t, "create", "--provider", "machine", "--user", "svc")
	require.NoError(t, err)
	assert.True(t, hasRow(out, "id", "lnk_m"), out)
	_, body := g.last(t)
	assert.JSONEq(t, `{"provider":"machine","user_id":"svc","grant":"client_credentials"}`, body)

	n := g.count()
	_, _, err = runCLI(t, "create", "--provider", "acme", "--user", "u")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "offers the grants authorization_code, device_code: choose one with --grant")

	_, _, err = runCLI(t, "create", "--provider", "nope", "--user", "u")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no provider "nope" (unknown_provider)`)
	assert.Contains(t, err.Error(), "known providers: machine, acme")
	assert.Equal(t, n+2, g.count(), "only the catalog was asked; no link was created")
}

func TestLinksCreateRejectsBadFlags(t *testing.T) {
	g := newFakeGateway(t, nil)
	cases := map[string][]string{
		"needs --provider and --user":  {"create", "--user", "alice"},
		"--password-stdin needs":       {"create", "--provider", "p", "--user", "u", "--password-stdin"},
		"--username needs":             {"create", "--provider", "p", "--user", "u", "--username", "bob"},
		"want key=value":               {"create", "--provider", "p", "--user", "u", "--param", "novalue"},
		"takes no arguments":           {"create", "--provider", "p", "--user", "u", "extra"},
		"give exactly one link id":     {"get"},
		"unknown links command":        {"frobnicate"},
		"--min-ttl must not":           {"token", "lnk_1", "--min-ttl", "-1s"},
		"not an http(s) URL":           {"get", "lnk_1", "--gateway", "127.0.0.1:8080"},
		"no links command given":       {},
		"filter with --provider":       {"list", "acme"},
		"standard input is empty":      {"create", "--provider", "p", "--user", "u", "--username", "bob", "--password-stdin"},
		"flag provided but not define": {"get", "lnk_1", "--nope"},
	}
	stdin = strings.NewReader("")
	for want, args := range cases {
		_, _, err := runCLI(t, args...)
		require.Error(t, err, args)
		assert.Contains(t, err.Error(), want, args)
	}
	assert.Zero(t, g.count())
}

func TestLinksList(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links": answer(200,
		`{"links":[`+linkJSON+`,{"id":"lnk_2","provider":"other","user_id":"bob","grant":"authorization_code","status":"pending_authorization","expires_at":null}],"next_cursor":"cur2"}`)})
	out, errOut, err := runCLI(t, "list", "--provider", "acme", "--status", "active", "--user", "alice", "--limit", "2", "--cursor", "cur1")
	require.NoError(t, err)
	req, _ := g.last(t)
	q := req.URL.Query()
	assert.Equal(t, "acme", q.Get("provider"))
	assert.Equal(t, "active", q.Get("status"))
	assert.Equal(t, "alice", q.Get("user_id"))
	assert.Equal(t, "2", q.Get("limit"))
	assert.Equal(t, "cur1", q.Get("cursor"))

	assert.True(t, hasRow(out, "ID", "PROVIDER", "USER", "GRANT", "STATUS", "EXPIRES"), out)
	assert.Regexp(t, `(?m)^lnk_1\s+acme\s+alice\s+client_credentials\s+active\s+2030-01-01T00:00:00Z`, out)
	assert.True(t, hasRow(out, "lnk_2", "other", "bob", "authorization_code", "pending_authorization", "-"), out)
	assert.Contains(t, errOut, "--cursor cur2")
	assert.NotContains(t, out, "cur2", "stdout stays a clean table")

	out, _, err = runCLI(t, "list", "--json")
	require.NoError(t, err)
	var page map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &page))
	assert.Equal(t, "cur2", page["next_cursor"])
	req, _ = g.last(t)
	assert.Empty(t, req.URL.RawQuery)
}

func TestLinksToken(t *testing.T) {
	const tok = `{"access_token":"` + cliTestToken + `","token_type":"Bearer","expires_at":"2030-01-01T00:00:00Z","scopes":["read"]}`
	g := newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links/lnk_1/token": answer(200, tok)})

	out, errOut, err := runCLI(t, "token", "lnk_1")
	require.NoError(t, err)
	assert.Equal(t, cliTestToken+"\n", out, "only the token, for $(...)")
	assert.Empty(t, errOut)
	req, _ := g.last(t)
	assert.Equal(t, "30", req.URL.Query().Get("min_ttl"), "default --min-ttl 30s")

	_, _, err = runCLI(t, "token", "--min-ttl", "90500ms", "lnk_1")
	require.NoError(t, err)
	req, _ = g.last(t)
	assert.Equal(t, "91", req.URL.Query().Get("min_ttl"), "rounded up to whole seconds")

	_, _, err = runCLI(t, "token", "lnk_1", "--min-ttl", "0")
	require.NoError(t, err)
	req, _ = g.last(t)
	assert.False(t, req.URL.Query().Has("min_ttl"))

	out, _, err = runCLI(t, "token", "lnk_1", "--json")
	require.NoError(t, err)
	assert.JSONEq(t, tok, out)
}

func TestLinksRefreshAndRevoke(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{
		"POST /v1/links/lnk_1/refresh": answer(200, `{"expires_at":"2030-01-01T00:00:00Z","vault_version":12}`),
		"POST /v1/links/lnk_1/revoke":  answer(200, `{"id":"lnk_1","status":"revoked"}`),
	})
	out, _, err := runCLI(t, "refresh", "lnk_1")
	require.NoError(t, err)
	assert.True(t, hasRow(out, "vault version", "12"), out)
	assert.Contains(t, out, "2030-01-01T00:00:00Z")

	out, _, err = runCLI(t, "revoke", "lnk_1", "--reason", "user left")
	require.NoError(t, err)
	assert.Equal(t, "link lnk_1 revoked\n", out)
	_, body := g.last(t)
	assert.JSONEq(t, `{"reason":"user left"}`, body)

	out, _, err = runCLI(t, "revoke", "--json", "lnk_1")
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"lnk_1","status":"revoked"}`, out)
	_, body = g.last(t)
	assert.Empty(t, body)
}

func TestLinksGatewayErrorsCarryCodeAndHint(t *testing.T) {
	newFakeGateway(t, map[string]http.HandlerFunc{
		"GET /v1/links/lnk_r/token": func(w http.ResponseWriter, r *http.Request) {
			gatewayError(w, http.StatusConflict, "link_revoked", "the link was revoked")
		},
		"GET /v1/links/lnk_p/token": func(w http.ResponseWriter, r *http.Request) {
			gatewayError(w, http.StatusConflict, "reauth_required", "the end-user must consent again")
		},
	})
	out, _, err := runCLI(t, "token", "lnk_r")
	require.Error(t, err)
	assert.Empty(t, out)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 2, err.Error())
	assert.Equal(t, "the link was revoked (link_revoked)", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "hint: "), lines[1])
	assert.Contains(t, lines[1], "tokenwarden links create")

	_, _, err = runCLI(t, "token", "lnk_p")
	assert.Contains(t, err.Error(), "(reauth_required)")
	assert.Contains(t, err.Error(), "POST /v1/links/lnk_p/reauthorize", "the hint names the link")

	_, _, err = runCLI(t, "get", "missing")
	assert.Contains(t, err.Error(), "no such link (not_found)")
	assert.Contains(t, err.Error(), "tokenwarden links list")

	t.Setenv("TOKENWARDEN_API_KEY", "tw_wrong-key-0123456789")
	_, _, err = runCLI(t, "get", "lnk_1")
	assert.Contains(t, err.Error(), "(unauthorized)")
	assert.Contains(t, err.Error(), "TOKENWARDEN_API_KEY")
	assert.NotContains(t, err.Error(), "tw_wrong-key-0123456789", "the key is never echoed")
}

func TestLinksUnreachableGateway(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	gw := srv.URL
	srv.Close()
	t.Setenv("TOKENWARDEN_API_KEY", cliTestKey)
	_, _, err := runCLI(t, "get", "lnk_1", "--gateway", gw)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot reach the gateway at "+gw)
	assert.Contains(t, err.Error(), "hint: ")
	assert.Contains(t, err.Error(), "TOKENWARDEN_GATEWAY")
	assert.NotContains(t, err.Error(), cliTestKey)
}

func TestLinksHelp(t *testing.T) {
	out, _, err := runCLI(t, "help")
	require.NoError(t, err)
	assert.Contains(t, out, "links token")
	_, errOut, err := runCLI(t, "token", "-h")
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, errOut, "-min-ttl")
}

func TestParseArgsInterleaved(t *testing.T) {
	fs := newFlagSet("x", io.Discard)
	j := fs.Bool("json", false, "")
	r := fs.String("reason", "", "")
	pos, err := parseArgs(fs, []string{"--json", "a", "--reason", "r", "b", "--", "--c"})
	require.NoError(t, err)
	assert.True(t, *j)
	assert.Equal(t, "r", *r)
	assert.Equal(t, []string{"a", "b", "--c"}, pos)
}

func TestRelative(t *testing.T) {
	assert.Equal(t, "45s from now", relative(45_000_000_000))
	assert.Equal(t, "6m ago", relative(-6*60_000_000_000))
	assert.Equal(t, "2h05m from now", relative(125*60_000_000_000))
	assert.Equal(t, "3d from now", relative(3*24*3600_000_000_000))
}

// A provider's error text with terminal escapes and a line break, stored
// in last_error before the gateway sanitized it, must not reach the
// terminal as such.
func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok (é)":           "plain text: ok (é)",
		"\x1b[31mred\x1b[0m":           `\x1b[31mred\x1b[0m`,
		"line\r\nforged row\tcol":      `line\r\nforged row\tcol`,
		"bad \xff byte":                `bad \xff byte`,
		"\u202eright-to-left override": `\u202eright-to-left override`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// The attack of issue 12 point 8: a provider's error_description with
// terminal escapes and CR/LF, stored raw in last_error, printed by
// 'links get' and in an API error message.
func TestLinksGetEscapesLastError(t *testing.T) {
	evil := `{"id":"lnk_1","provider":"p","user_id":"u","grant":"authorization_code","status":"failed",` +
		`"scopes":[],"metadata":{},"last_error":"authorization denied: \u001b]0;owned\u0007\r\nstatus  active",` +
		`"created_at":"2030-01-01T00:00:00Z","updated_at":"2030-01-01T00:00:00Z"}`
	newFakeGateway(t, map[string]http.HandlerFunc{
		"GET /v1/links/lnk_1":        answer(200, evil),
		"GET /v1/links/lnk_1/events": answer(200, `{"events":[],"next_cursor":""}`),
		"GET /v1/links/lnk_2/token": func(w http.ResponseWriter, r *http.Request) {
			gatewayError(w, http.StatusConflict, "link_failed", "the link failed (denied: \x1b[2J\r\ncleared)")
		},
	})
	out, _, err := runCLI(t, "get", "lnk_1")
	require.NoError(t, err)
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\r")
	assert.False(t, hasRow(out, "status", "active"), "a forged row:\n%s", out)
	assert.Contains(t, out, `\x1b]0;owned\a\r\nstatus  active`)

	_, _, err = runCLI(t, "token", "lnk_2")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\x1b")
	assert.Contains(t, err.Error(), `\x1b[2J\r\ncleared`)
}
