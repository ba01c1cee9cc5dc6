package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	demobanksim "github.com/tokenwarden/tokenwarden/providers/demobank/sim"
	everifinsim "github.com/tokenwarden/tokenwarden/providers/everifin/sim"
	finapisim "github.com/tokenwarden/tokenwarden/providers/finapi/sim"
	lucasim "github.com/tokenwarden/tokenwarden/providers/luca/sim"
	normansim "github.com/tokenwarden/tokenwarden/providers/norman/sim"
)

// Fixed credentials of the dev simulators. They guard nothing but
// simulators on 127.0.0.1; the engine still reads them from Vault, as it
// would a real provider's.
const (
	devNormanSecret   = "dev-norman-secret-key"
	devFinAPISecret   = "dev-finapi-client-secret"
	devLucaSecret     = "dev-luca-client-secret"
	devEverifinSecret = "dev-everifin-client-secret"
	devDemoUser       = "demo"
	devDemoPassword   = "demo-password"
)

// devPorts are the ports of the OIDC peer and the simulators, the keys of
// deployments/dev/catalog.yaml.
type devPorts struct {
	OIDCPeer, Norman, FinAPI, Luca, Everifin, Demobank int
}

func newDevPorts(peer int) devPorts {
	return devPorts{OIDCPeer: peer, Norman: peer + 1, FinAPI: peer + 2, Luca: peer + 3, Everifin: peer + 4, Demobank: peer + 5}
}

// devSims serves a simulator of each seed provider, with lifetimes short
// enough to watch. It returns the secrets to put in Vault.
func startDevSims(ctx context.Context, ports devPorts) (secrets map[string]string, stop func(), err error) {
	const access = 45 * time.Second
	sims := []struct {
		name    string
		port    int
		handler http.Handler
	}{
		{"norman", ports.Norman, normansim.New(normansim.Options{InstitutionID: "dev-institution", SecretKey: devNormanSecret, AccessTTL: access})},
		{"finapi", ports.FinAPI, finapisim.New(finapisim.Options{ClientID: "dev-finapi-client", ClientSecret: devFinAPISecret, ClientTTL: access, AccessTTL: access})},
		{"luca", ports.Luca, lucasim.New(lucasim.Options{ClientID: "dev-luca-client", ClientSecret: devLucaSecret, AccessTTL: access,
			Users: map[string]string{devDemoUser: devDemoPassword}, AutoApprove: true})},
		{"everifin", ports.Everifin, everifinsim.New(everifinsim.Options{Realm: "dev", AccessTTL: access, RefreshTTL: 3 * access,
			Clients: []everifinsim.Client{{ID: "dev-everifin-client", Secret: devEverifinSecret}},
			Users:   map[string]string{devDemoUser: devDemoPassword}, AutoApprove: true})},
		{"finapi-demobank", ports.Demobank, demobanksim.New(demobanksim.Options{AccessTTL: access, RefreshTTL: 2 * access,
			Users: map[string]string{devDemoUser: devDemoPassword}})},
	}
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	for _, sim := range sims {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(sim.port)))
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("%s simulator: %w (another `make dev` running? try -port-offset)", sim.name, err)
		}
		srv := &http.Server{Handler: sim.handler, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(os.Stderr, "%s simulator: %v\n", sim.name, err)
			}
		}()
	}
	return map[string]string{
		"norman": devNormanSecret, "finapi": devFinAPISecret, "luca": devLucaSecret, "everifin": devEverifinSecret,
	}, stop, nil
}

// writeDevCatalog fills the ports into deployments/dev/catalog.yaml and
// writes the result into the data folder.
func writeDevCatalog(dir string, ports devPorts) (string, error) {
	const src = "deployments/dev/catalog.yaml"
	raw, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("dev catalog: %w (run `tokenwarden dev` from the repository root)", err)
	}
	tmpl, err := template.New(src).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return "", fmt.Errorf("dev catalog %s: %w", src, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, ports); err != nil {
		return "", fmt.Errorf("dev catalog %s: %w", src, err)
	}
	path := filepath.Join(dir, "catalog.yaml")
	return path, os.WriteFile(path, out.Bytes(), 0o600)
}
