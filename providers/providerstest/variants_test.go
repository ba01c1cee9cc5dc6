package providerstest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
)

// seedVariant is one link story against a simulator in a non-default
// mode (issue 11: the seed providers as the real services behave). Each
// variant gets its own simulator and catalog entry, named
// "<kind>-<name>"; one Tokenwarden serves all variants of a provider.
type seedVariant struct {
	name string
	// sim builds the variant's simulator for fixture f.
	sim func(f *fixture) (http.Handler, controls)
	// entry is the catalog entry, as spec.Entry.
	entry func(f *fixture) string
	// faultPath is where the wire puts faults ("" for none).
	faultPath string
	run       func(t *check, h *harness, f *fixture)
}

// runSeedVariants runs vs side by side against one Tokenwarden, as
// runProvider runs its scenarios, then scans for leaked secrets. secret
// is the client secret stored at providers/<kind>.
func runSeedVariants(t *testing.T, kind, secret string, vs []seedVariant) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	fixtures := make([]*fixture, len(vs))
	var catalog strings.Builder
	catalog.WriteString("providers:\n")
	for i, v := range vs {
		f := &fixture{Name: kind + "-" + v.name, User: "u" + randomString(6), Password: randomString(18)}
		sim, c := v.sim(f)
		f.ctl = c
		f.wire = newWire(sim, c, v.faultPath)
		srv := httptest.NewServer(f.wire)
		t.Cleanup(srv.Close)
		f.URL = srv.URL
		fixtures[i] = f
		catalog.WriteString(v.entry(f))
	}
	opts := e2e.Options{
		Catalog: catalog.String(),
		Gateway: gateway.Config{TokenMargin: 500 * time.Millisecond},
	}
	if secret != "" {
		opts.VaultSecrets = map[string]map[string]string{"providers/" + kind: {"client_secret": secret}}
	}
	s := e2e.Start(t, opts)
	h := &harness{s: s, spec: spec{Kind: kind}, ctx: ctx}

	names := make([]string, len(vs))
	runs := make([]func(*check, *harness, *fixture), len(vs))
	for i, v := range vs {
		names[i], runs[i] = v.name, v.run
	}
	took := runConcurrently(t, h, names, runs, fixtures)
	t.Logf("%s variants took %s", kind, took.Round(100*time.Millisecond))
	s.ScanForSecrets(ctx)
}

// runConcurrently runs every variant against its fixture at once, reports
// each as a subtest, and has every secret the simulators saw join the
// leak scan. It returns how long they took together.
func runConcurrently(t *testing.T, h *harness, names []string, runs []func(*check, *harness, *fixture), fixtures []*fixture) time.Duration {
	start := time.Now()
	checks := make([]*check, len(runs))
	var wg sync.WaitGroup
	for i, run := range runs {
		c := &check{start: start}
		checks[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.finish()
			run(c, h, fixtures[i])
		}()
	}
	wg.Wait()
	for i, name := range names {
		t.Run(name, checks[i].report)
	}
	for _, f := range fixtures {
		h.s.Remember(f.wire.secrets()...)
		h.s.Remember(f.Password)
	}
	return time.Since(start)
}

// createLink is POST /v1/links for one of the variants' links.
func (h *harness) createLink(t *check, req tokenwarden.CreateLinkRequest) string {
	t.Helper()
	l, err := h.s.Client.CreateLink(h.ctx, req, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	return l.ID
}
