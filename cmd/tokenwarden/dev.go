package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/codec"
	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/secrets"

	vault "github.com/hashicorp/vault/api"
)

// runDev starts everything a developer needs, in the foreground: the
// three services, the OIDC peer, migrations, a dev API key, the worker and
// the gateway. Ctrl-C stops it all; state stays in the data folder.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".dev", "data folder for all state (delete it, or `make reset`, to start over)")
	binDir := fs.String("bin", env("TOKENWARDEN_BIN", filepath.Join(os.Getenv("HOME"), ".cache", "tokenwarden", "bin")), "folder with the temporal and vault binaries (deployments/dev/tools.sh builds them)")
	listen := fs.String("listen", "127.0.0.1:8080", "gateway listen address")
	peerPort := fs.Int("oidc-peer-port", 9400, "port of the local OIDC peer")
	offset := fs.Int("port-offset", 0, "add this to every port (Temporal, UI, Vault, Postgres, gateway, OIDC peer) to run a second stack beside the first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports := devstack.DevPorts
	if *offset != 0 {
		ports = devstack.Ports{Temporal: ports.Temporal + *offset, TemporalUI: ports.TemporalUI + *offset,
			Vault: ports.Vault + *offset, Postgres: ports.Postgres + *offset}
		host, port, err := net.SplitHostPort(*listen)
		if err != nil {
			return fmt.Errorf("-listen %q: %w", *listen, err)
		}
		p, _ := strconv.Atoi(port)
		*listen = net.JoinHostPort(host, strconv.Itoa(p+*offset))
		*peerPort += *offset
	}
	gatewayURL := "http://" + *listen
	logger := newLogger(stderr)
	fmt.Fprintf(stdout, "tokenwarden dev: starting Temporal, Vault and PostgreSQL in %s (logs in %s/logs)\n", *dir, *dir)

	stack, err := devstack.Start(ctx, devstack.Options{
		Dir:    *dir,
		BinDir: *binDir,
		Ports:  ports,
		Log:    stdout,
		// The Temporal UI decodes payloads through the gateway's codec
		// endpoint (a no-op until a codec key is configured).
		UICodecEndpoint: gatewayURL + "/codec",
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "tokenwarden dev: stopping")
		if err := stack.Stop(); err != nil {
			fmt.Fprintf(stderr, "tokenwarden dev: stop: %v\n", err)
		}
	}()
	info := stack.Info()

	callback := gatewayURL + "/v1/oauth/callback"
	simPorts := newDevPorts(*peerPort)
	peer, err := oidcpeer.Start(ctx, oidcpeer.Options{
		Port:                 *peerPort,
		AccessTokenTTL:       30 * time.Second,
		ClientCredentialsTTL: 30 * time.Second,
		RedirectURIs:         []string{callback},
		Log:                  logFile(*dir, "oidc-peer.log"),
	})
	if err != nil {
		return fmt.Errorf("oidc peer: %w", err)
	}
	defer peer.Close()

	// The peer's client secret goes where the catalog points: Vault.
	vc, err := vault.NewClient(&vault.Config{Address: info.VaultAddress})
	if err != nil {
		return err
	}
	vc.SetToken(info.VaultToken)
	sec := secrets.New(vc, info.VaultMount, "tokenwarden")
	if err := sec.PutValue(ctx, "providers/oidc-peer",
		map[string]string{"client_secret": peer.ClientSecret}); err != nil {
		return fmt.Errorf("store the OIDC peer's client secret: %w", err)
	}

	simSecrets, stopSims, err := startDevSims(ctx, simPorts)
	if err != nil {
		return err
	}
	defer stopSims()
	for name, secret := range simSecrets {
		if err := sec.PutValue(ctx, "providers/"+name, map[string]string{"client_secret": secret}); err != nil {
			return fmt.Errorf("store the %s simulator's client secret: %w", name, err)
		}
	}
	catalog := os.Getenv("TOKENWARDEN_CATALOG")
	if catalog == "" {
		if catalog, err = writeDevCatalog(*dir, simPorts); err != nil {
			return err
		}
	}
	if err := devCodecKeys(ctx, sec); err != nil {
		return err
	}
	if err := migrate(ctx, info.PostgresURL, -1, io.Discard); err != nil {
		return err
	}
	apiKey := os.Getenv("TOKENWARDEN_BOOTSTRAP_API_KEY")
	if apiKey == "" {
		apiKey = devAPIKey(*dir)
	}

	cfg := config{
		TemporalAddress:   info.TemporalAddress,
		TemporalNamespace: info.TemporalNamespace,
		VaultAddress:      info.VaultAddress,
		VaultRoleID:       info.VaultRoleID,
		VaultSecretID:     info.VaultSecretID,
		VaultMount:        info.VaultMount,
		VaultPrefix:       "tokenwarden",
		DatabaseURL:       info.PostgresURL,
		Catalog:           catalog,
		Listen:            *listen,
		BootstrapAPIKey:   apiKey,
		ShutdownTimeout:   5 * time.Second,
		// The Temporal UI calls the codec endpoint from its own origin,
		// in a browser that has no API key: on a developer's machine it
		// may, from loopback and never through a proxy.
		CodecOrigins:         info.TemporalUIURL + "," + strings.Replace(info.TemporalUIURL, "127.0.0.1", "localhost", 1),
		CodecKeylessLoopback: true,
	}
	d, err := connect(ctx, &cfg, logger, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	// Webhook receivers of a developer run on this machine.
	d.webhooksToInternal = true
	// The gateway logs in as itself, as in a deployment: its Vault
	// identity reads access tokens, never a refresh token or a stored
	// credential, so a gateway that needed more fails here first.
	gcfg := cfg
	gcfg.VaultRoleID, gcfg.VaultSecretID = info.VaultGatewayRoleID, info.VaultGatewaySecretID
	gd, err := connect(ctx, &gcfg, logger, stderr)
	if err != nil {
		return err
	}
	defer gd.close()
	if err := bootstrapKey(ctx, gd.store, apiKey); err != nil {
		return err
	}

	errc := make(chan error, 3)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- serveWorker(runCtx, d, logger) }()
	ln, err := listenGateway(&gcfg)
	if err != nil {
		return err
	}
	go func() { errc <- serveGatewayOn(runCtx, ln, gd, &gcfg, logger) }()
	go func() { errc <- stack.Wait() }()

	fmt.Fprintf(stdout, `
Tokenwarden is running.
  Gateway      %[1]s   (health: %[1]s/readyz, API docs: %[1]s/docs)
  Temporal UI  %[2]s/namespaces/%[3]s/workflows
  Temporal     %[4]s   (namespace %[3]s)
  Vault        %[5]s   (root token in %[6]s/vault/init.json)
  PostgreSQL   %[7]s
  OIDC peer    %[8]s   (any username logs in)
  Simulators   Norman, finAPI, Luca, Everifin, finAPI Demobank on ports %[10]d-%[11]d (catalog: %[6]s/catalog.yaml)
  API key      %[9]s   (tenant "default")

Try:
  export TOKENWARDEN_API_KEY=%[9]s
  go run ./cmd/tokenwarden links create --provider oidc-peer --user alice --grant client_credentials
  curl -s -H "Authorization: Bearer $TOKENWARDEN_API_KEY" %[1]s/v1/links

Ctrl-C stops everything; state stays in %[6]s (make reset deletes it).
`, gatewayURL, info.TemporalUIURL, info.TemporalNamespace, info.TemporalAddress, info.VaultAddress, *dir,
		info.PostgresURL, peer.Issuer, apiKey, simPorts.Norman, simPorts.Demobank)

	printViews(stdout, info.TemporalUIURL, info.TemporalNamespace, time.Now())
	go printConnectURL(runCtx, stdout, gatewayURL, apiKey, logger)
	go printProxyCall(runCtx, stdout, gatewayURL, apiKey, logger)

	go seedDemo(runCtx, gatewayURL, apiKey, logger)

	select {
	case <-ctx.Done():
		cancel()
		return nil
	case err := <-errc:
		cancel()
		return err
	}
}

// devCodecKeys makes the payload codec's key once and keeps it in Vault,
// so that every Temporal payload of the dev stack is encrypted and the UI
// decodes it through the gateway.
func devCodecKeys(ctx context.Context, sec *secrets.Store) error {
	if _, err := sec.Resolve(ctx, codecKeysRef); err == nil {
		return nil
	}
	key, err := codec.GenerateKey()
	if err != nil {
		return err
	}
	path, field, _ := strings.Cut(codecKeysRef, "#")
	if err := sec.PutValue(ctx, path, map[string]string{field: "k1:" + key}); err != nil {
		return fmt.Errorf("store the payload codec key: %w", err)
	}
	return nil
}

// devAPIKey returns the dev stack's API key, made once and kept in the
// data folder so that it survives restarts.
func devAPIKey(dir string) string {
	path := filepath.Join(dir, "api-key")
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b)
	}
	buf := make([]byte, 24)
	_, _ = rand.Read(buf)
	key := "tw_dev_" + base64.RawURLEncoding.EncodeToString(buf)
	_ = os.WriteFile(path, []byte(key), 0o600)
	return key
}

func logFile(dir, name string) io.Writer {
	_ = os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	f, err := os.OpenFile(filepath.Join(dir, "logs", name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	return f
}

// demoLinks are the links `make dev` keeps: one per provider of the dev
// catalog, so that a new user sees six lifecycles in the Temporal UI.
var demoLinks = []tokenwarden.CreateLinkRequest{
	{Provider: "oidc-peer", UserID: demoUser, Grant: "client_credentials"},
	{Provider: "norman", UserID: demoUser, Grant: "norman_user", Params: map[string]string{
		"username": devDemoUser, "email": "demo@example.com", "external_id": "7573b746-0be5-434a-90c3-37c1edb062bb"}},
	{Provider: "finapi", UserID: demoUser, Grant: "password", Params: map[string]string{"create_user": "true", "email": "demo@example.com"},
		Credentials: &tokenwarden.Credentials{Username: devDemoUser, Password: devDemoPassword}},
	{Provider: "luca", UserID: demoUser, Grant: "authorization_code", Params: map[string]string{"locale": "en"}},
	{Provider: "everifin", UserID: demoUser, Grant: "authorization_code"},
	{Provider: "finapi-demobank", UserID: demoUser, Grant: "password",
		Credentials: &tokenwarden.Credentials{Username: devDemoUser, Password: devDemoPassword}},
}

// demoUser is the user_id of the demo links.
const demoUser = "demo"

// seedDemo creates the demo links through the gateway (the path any caller
// takes) and walks the consent pages of the authorization-code ones, as an
// end-user's browser would; the simulators approve at once. The
// simulators keep their users and tokens in memory, so the demo links of
// an earlier run cannot survive a restart: they are revoked first (their
// histories stay in the Temporal UI as completed workflows).
func seedDemo(ctx context.Context, gatewayURL, apiKey string, logger *slog.Logger) {
	c := tokenwarden.NewClient(gatewayURL, apiKey)
	var old []tokenwarden.Link
	for ctx.Err() == nil {
		var err error
		if old, err = listAll(ctx, c, tokenwarden.ListOptions{UserID: demoUser}); err == nil {
			break
		}
		// The gateway may still be starting.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	for _, l := range old {
		if l.Status != "revoked" {
			if err := c.Revoke(ctx, l.ID, "dev stack restarted"); err != nil {
				logger.Warn("demo link: revoke the previous run's", "link", l.ID, "error", err)
			}
		}
	}
	run := strconv.FormatInt(time.Now().Unix(), 36)
	// A browser keeps cookies: providers that drop state (Luca) bind the
	// sign-in to the browser with one.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	for _, req := range demoLinks {
		l, err := c.CreateLink(ctx, req, "dev-demo-"+req.Provider+"-"+run)
		if err != nil {
			logger.Warn("demo link", "provider", req.Provider, "error", err)
			continue
		}
		if l.AuthorizationURL != "" {
			resp, err := browser.Get(l.AuthorizationURL)
			if err != nil {
				logger.Warn("demo link: consent", "provider", req.Provider, "error", err)
				continue
			}
			resp.Body.Close()
		}
		logger.Info("demo link", "provider", req.Provider, "link", l.ID)
	}
}

func listAll(ctx context.Context, c *tokenwarden.Client, opts tokenwarden.ListOptions) ([]tokenwarden.Link, error) {
	var all []tokenwarden.Link
	for {
		page, err := c.ListLinks(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Links...)
		if page.NextCursor == "" {
			return all, nil
		}
		opts.Cursor = page.NextCursor
	}
}
