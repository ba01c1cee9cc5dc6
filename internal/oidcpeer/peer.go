// Package oidcpeer runs the local OpenID Connect provider in
// deployments/dev/oidc-peer (oidc-provider on Node) for integration tests,
// and drives its login, consent and device pages the way a person would.
package oidcpeer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Client IDs registered by peer.mjs. Secrets are random per Start.
const (
	// ClientID is the confidential client Tokenwarden uses: authorization
	// code, refresh token, client credentials and device code grants.
	ClientID = "tokenwarden"
	// PublicClientID is a public (PKCE-only) client with the same grants
	// except client credentials.
	PublicClientID = "tokenwarden-public"
	// ResourceServerClientID may introspect any token, as an API would.
	ResourceServerClientID = "tokenwarden-rs"
)

// PeerDir is the peer's folder relative to the repository root.
const PeerDir = "deployments/dev/oidc-peer"

// ErrUnavailable marks a peer that cannot start on this machine because
// Node or the peer's npm dependencies are missing.
var ErrUnavailable = errors.New("oidc peer unavailable")

// Options configures a peer. Zero values select the defaults.
type Options struct {
	// AccessTokenTTL is the lifetime of access tokens; default 5s. Whole
	// seconds, rounded up.
	AccessTokenTTL time.Duration
	// ClientCredentialsTTL is the lifetime of client credentials tokens;
	// default AccessTokenTTL.
	ClientCredentialsTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token; default 1h.
	RefreshTokenTTL time.Duration
	// DeviceCodeTTL is the lifetime of device codes; default 10m.
	DeviceCodeTTL time.Duration
	// AuthorizationCodeTTL is the lifetime of authorization codes;
	// default 1m.
	AuthorizationCodeTTL time.Duration
	// DeviceInterval is the device flow polling interval the peer
	// advertises; default 1s.
	DeviceInterval time.Duration
	// RedirectURIs registered for the clients. Loopback http URIs match any
	// port. Default http://127.0.0.1/v1/oauth/callback and the localhost twin.
	RedirectURIs []string
	// RequireOfflineAccess applies oidc-provider's strict rule: a refresh
	// token only for scope offline_access with prompt=consent. By default
	// every grant of a client allowed to refresh gets one.
	RequireOfflineAccess bool
	// RefreshReuseGrace keeps a rotated refresh token usable for this long
	// after its rotation: a second request with it gets the first reply
	// again (Okta's grace period, Auth0's reuse interval). Zero: a reuse
	// is detected and revokes the grant. Whole seconds, rounded up.
	RefreshReuseGrace time.Duration
	// Port to listen on at 127.0.0.1; 0 picks a free port.
	Port int
	// Log receives the peer's output. It never contains tokens or secrets.
	Log io.Writer
}

// Peer is a running oidc-peer process.
type Peer struct {
	Issuer string
	// ClientID and ClientSecret authenticate the confidential client.
	ClientID, ClientSecret string

	AuthURL, TokenURL, DeviceAuthURL, RevocationURL       string
	IntrospectionURL, UserinfoURL, EndSessionURL, JWKSURL string

	rsSecret string
	http     *http.Client
	cmd      *exec.Cmd
	stdin    io.Closer
	exited   chan struct{}
	waitErr  error

	closeOnce sync.Once
	closeErr  error
}

// Start launches `node deployments/dev/oidc-peer/peer.mjs` and returns once
// its discovery document answers. ctx bounds the start only; the peer runs
// until Close. Errors for a missing Node or missing npm dependencies wrap
// ErrUnavailable.
func Start(ctx context.Context, o Options) (*Peer, error) {
	dir, err := locatePeerDir()
	if err != nil {
		return nil, err
	}
	node, err := nodeBinary()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return nil, fmt.Errorf("%w: %s/node_modules is missing; run `npm install --no-audit --no-fund --prefix %s`", ErrUnavailable, PeerDir, PeerDir)
	}

	env, clientSecret, rsSecret, err := peerEnv(o)
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(node, "peer.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("oidc peer: stdin pipe: %w", err)
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	logw = &lockedWriter{w: logw}
	cmd.Stderr = logw
	ready := make(chan string, 1)
	cmd.Stdout = &readyWriter{log: logw, ready: ready}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("oidc peer: starting %s: %w", node, err)
	}

	p := &Peer{
		ClientID:     ClientID,
		ClientSecret: clientSecret,
		rsSecret:     rsSecret,
		http:         &http.Client{Timeout: 30 * time.Second},
		cmd:          cmd,
		stdin:        stdin,
		exited:       make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	select {
	case p.Issuer = <-ready:
	case <-p.exited:
		return nil, fmt.Errorf("oidc peer exited before it was ready (%v); see its log", p.waitErr)
	case <-ctx.Done():
		_ = p.Close()
		return nil, fmt.Errorf("oidc peer not ready: %w", ctx.Err())
	}
	if err := p.discover(ctx); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// StartT starts a peer for a test and stops it in Cleanup. Without Node or
// the npm dependencies the test is skipped, or fails when
// TOKENWARDEN_REQUIRE_STACK=1. With a nil o.Log the peer's output is shown
// only if the test fails.
func StartT(t testing.TB, o Options) *Peer {
	t.Helper()
	var buf *tailBuffer
	if o.Log == nil {
		buf = &tailBuffer{max: 64 << 10}
		o.Log = buf
	}
	// Node loads oidc-provider in a few seconds on an idle machine; make
	// test starts dozens of peers beside Chromium and the stack on two
	// cores, where one once took over a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, o)
	if err != nil {
		if out := buf.String(); out != "" {
			t.Logf("oidc peer output:\n%s", out)
		}
		if errors.Is(err, ErrUnavailable) && os.Getenv("TOKENWARDEN_REQUIRE_STACK") != "1" {
			t.Skipf("skipping: %v (set TOKENWARDEN_REQUIRE_STACK=1 to fail instead)", err)
		}
		t.Fatalf("starting oidc peer: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("stopping oidc peer: %v", err)
		}
		if buf != nil && t.Failed() && buf.String() != "" {
			t.Logf("oidc peer output:\n%s", buf.String())
		}
	})
	return p
}

// Close stops the peer and waits for it to exit.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		_ = p.stdin.Close()
		select {
		case <-p.exited:
			return
		default:
		}
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			p.closeErr = errors.New("oidc peer did not stop within 5s and was killed")
		}
	})
	return p.closeErr
}

// Endpoint is the peer's endpoint for golang.org/x/oauth2.
func (p *Peer) Endpoint() oauth2.Endpoint {
	return oauth2.Endpoint{
		AuthURL:       p.AuthURL,
		TokenURL:      p.TokenURL,
		DeviceAuthURL: p.DeviceAuthURL,
		AuthStyle:     oauth2.AuthStyleInHeader,
	}
}

// OAuth2Config is a config for the confidential client.
func (p *Peer) OAuth2Config(redirectURL string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       scopes,
	}
}

func (p *Peer) discover(ctx context.Context) error {
	var doc struct {
		Issuer        string `json:"issuer"`
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
		DeviceAuth    string `json:"device_authorization_endpoint"`
		Revocation    string `json:"revocation_endpoint"`
		Introspection string `json:"introspection_endpoint"`
		Userinfo      string `json:"userinfo_endpoint"`
		EndSession    string `json:"end_session_endpoint"`
		JWKS          string `json:"jwks_uri"`
	}
	if err := p.getJSON(ctx, p.Issuer+"/.well-known/openid-configuration", &doc); err != nil {
		return fmt.Errorf("oidc peer discovery: %w", err)
	}
	if doc.Issuer != p.Issuer {
		return fmt.Errorf("oidc peer discovery: issuer %q, want %q", doc.Issuer, p.Issuer)
	}
	p.AuthURL, p.TokenURL, p.DeviceAuthURL = doc.Authorization, doc.Token, doc.DeviceAuth
	p.RevocationURL, p.IntrospectionURL = doc.Revocation, doc.Introspection
	p.UserinfoURL, p.EndSessionURL, p.JWKSURL = doc.Userinfo, doc.EndSession, doc.JWKS
	return nil
}

func (p *Peer) getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("GET %s: decoding: %w", url, err)
	}
	return nil
}

func peerEnv(o Options) (env []string, clientSecret, rsSecret string, err error) {
	seconds := func(name string, d, def time.Duration) (string, error) {
		if d == 0 {
			d = def
		}
		if d < 0 {
			return "", fmt.Errorf("oidc peer: %s must not be negative", name)
		}
		return strconv.Itoa(int(math.Ceil(d.Seconds()))), nil
	}
	at, err := seconds("AccessTokenTTL", o.AccessTokenTTL, 5*time.Second)
	if err != nil {
		return nil, "", "", err
	}
	cc, err := seconds("ClientCredentialsTTL", o.ClientCredentialsTTL, 0)
	if err != nil {
		return nil, "", "", err
	}
	rt, err := seconds("RefreshTokenTTL", o.RefreshTokenTTL, time.Hour)
	if err != nil {
		return nil, "", "", err
	}
	dc, err := seconds("DeviceCodeTTL", o.DeviceCodeTTL, 10*time.Minute)
	if err != nil {
		return nil, "", "", err
	}
	ac, err := seconds("AuthorizationCodeTTL", o.AuthorizationCodeTTL, time.Minute)
	if err != nil {
		return nil, "", "", err
	}
	di, err := seconds("DeviceInterval", o.DeviceInterval, time.Second)
	if err != nil {
		return nil, "", "", err
	}
	grace := "0"
	if o.RefreshReuseGrace != 0 {
		if grace, err = seconds("RefreshReuseGrace", o.RefreshReuseGrace, 0); err != nil {
			return nil, "", "", err
		}
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, "", "", fmt.Errorf("oidc peer: port %d out of range", o.Port)
	}
	clientSecret, rsSecret = randomSecret(), randomSecret()
	// Secrets travel in the environment, not argv, so ps does not show them.
	env = []string{
		"OIDC_PEER_HOST=127.0.0.1",
		"OIDC_PEER_PORT=" + strconv.Itoa(o.Port),
		"OIDC_PEER_ACCESS_TOKEN_TTL=" + at,
		"OIDC_PEER_REFRESH_TOKEN_TTL=" + rt,
		"OIDC_PEER_DEVICE_CODE_TTL=" + dc,
		"OIDC_PEER_AUTHORIZATION_CODE_TTL=" + ac,
		"OIDC_PEER_DEVICE_INTERVAL=" + di,
		"OIDC_PEER_CLIENT_SECRET=" + clientSecret,
		"OIDC_PEER_RS_CLIENT_SECRET=" + rsSecret,
		"OIDC_PEER_REQUIRE_OFFLINE_ACCESS=" + strconv.FormatBool(o.RequireOfflineAccess),
		"OIDC_PEER_EXIT_ON_STDIN_EOF=1",
		"OIDC_PEER_REFRESH_REUSE_GRACE=" + grace,
		"OIDC_PEER_CLIENT_CREDENTIALS_TTL=",
		"OIDC_PEER_REDIRECT_URIS=",
		"OIDC_PEER_SCOPES=",
	}
	if cc != "0" {
		env = append(env, "OIDC_PEER_CLIENT_CREDENTIALS_TTL="+cc)
	}
	if len(o.RedirectURIs) > 0 {
		for _, u := range o.RedirectURIs {
			if strings.Contains(u, ",") {
				return nil, "", "", fmt.Errorf("oidc peer: redirect URI %q must not contain a comma", u)
			}
		}
		env = append(env, "OIDC_PEER_REDIRECT_URIS="+strings.Join(o.RedirectURIs, ","))
	}
	return env, clientSecret, rsSecret, nil
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func nodeBinary() (string, error) {
	name := "node"
	if n := os.Getenv("TOKENWARDEN_NODE"); n != "" {
		name = n
	}
	n, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: node not found (%v); install Node.js or set TOKENWARDEN_NODE to its path", ErrUnavailable, err)
	}
	return n, nil
}

// locatePeerDir walks up from the working directory to the module root, then
// tries this source file's checkout, so tests in any package find the peer.
func locatePeerDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		for dir := start; ; {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				peer := filepath.Join(dir, filepath.FromSlash(PeerDir))
				if _, err := os.Stat(filepath.Join(peer, "peer.mjs")); err == nil {
					return peer, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w: cannot find %s/peer.mjs above the working directory", ErrUnavailable, PeerDir)
}

// readyWriter copies the peer's stdout to the log and reports the issuer
// from the line peer.mjs prints once it listens.
type readyWriter struct {
	log     io.Writer
	ready   chan<- string
	partial []byte
	done    bool
}

func (r *readyWriter) Write(b []byte) (int, error) {
	_, _ = r.log.Write(b)
	if r.done {
		return len(b), nil
	}
	r.partial = append(r.partial, b...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		line := string(r.partial[:i])
		r.partial = r.partial[i+1:]
		if issuer, ok := strings.CutPrefix(line, "oidc-peer ready issuer="); ok {
			r.ready <- strings.TrimSpace(issuer)
			r.done, r.partial = true, nil
			break
		}
	}
	if len(r.partial) > 4096 {
		r.partial = r.partial[len(r.partial)-4096:]
	}
	return len(b), nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
