// Package scale is `make scale`: many links against a fast simulated
// provider on the real Temporal server (PostgreSQL), measured, with the
// worker(s) in processes of their own. It writes
// docs/results/scale-<links>-links-<workers>-workers.md.
//
// Without TOKENWARDEN_SCALE=1 it runs a short version on the test stack
// (`make test`): a few dozen links for under a minute, checking what the
// long run checks (no expired token served; every token the provider
// issued counted by its link), without writing results.
package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
)

// config is one run's shape, from the environment (scale/run.sh).
type config struct {
	links, workers, readsPerSec int
	life, run                   time.Duration
	// enrollWithin, when set, bounds the enrollment phase (creating
	// links, then waiting for them to be active): a run the machine
	// cannot enroll in time reports how far it got, and goes on with the
	// links that are active.
	enrollWithin time.Duration
	// long: the measured run of make scale, which writes results and
	// checks the performance goals; otherwise the short version.
	long   bool
	out    string // results directory ("": write nothing)
	logDir string // worker logs
}

func loadConfig(t *testing.T) config {
	c := config{links: 40, workers: 1, readsPerSec: 50, life: 20 * time.Second, run: 45 * time.Second, logDir: t.TempDir()}
	if os.Getenv("TOKENWARDEN_SCALE") != "" {
		c = config{long: true, links: envInt("TOKENWARDEN_SCALE_LINKS", 10000), workers: envInt("TOKENWARDEN_SCALE_WORKERS", 1),
			readsPerSec:  envInt("TOKENWARDEN_SCALE_READS", 200),
			life:         envDuration("TOKENWARDEN_SCALE_TOKEN_LIFETIME", 5*time.Minute),
			run:          envDuration("TOKENWARDEN_SCALE_DURATION", 20*time.Minute),
			enrollWithin: envDuration("TOKENWARDEN_SCALE_ENROLL_WITHIN", 0),
			out:          os.Getenv("TOKENWARDEN_SCALE_OUT"), logDir: os.Getenv("TOKENWARDEN_SCALE_LOGS")}
		if c.logDir == "" {
			c.logDir = t.TempDir()
		}
	}
	return c
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// provider is the fast simulated token endpoint (client credentials): it
// counts what it issues, and stops issuing (503) when told to, so that
// the run can end with nothing in flight.
type provider struct {
	srv     *httptest.Server
	issued  atomic.Int64
	stopped atomic.Bool
	life    time.Duration
}

func newProvider(t *testing.T, life time.Duration) *provider {
	p := &provider{life: life}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.stopped.Load() {
			w.Header().Set("Retry-After", "600")
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		n := p.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("scale-%d-%d", n, rand.Int64()),
			"token_type": "Bearer", "expires_in": int(life.Seconds())})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// issue asks the provider for a token directly.
func (p *provider) issue(t *testing.T) {
	resp, err := http.PostForm(p.srv.URL+"/token", url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestScale creates links through the gateway, keeps them refreshing for
// the run's duration while callers read tokens at a steady rate, then
// stops the provider, lets what is in flight land, and reports.
func TestScale(t *testing.T) {
	c := loadConfig(t)
	p := newProvider(t, c.life)
	s := e2e.Start(t, e2e.Options{
		VaultSecrets: map[string]map[string]string{"providers/sim": {"client_secret": "scale-client-secret"}},
		Catalog: fmt.Sprintf(`providers:
  - name: sim
    kind: oauth2
    endpoint: {token_url: %q}
    auth_style: body
    client_id: scale
    client_secret: {vault: "providers/sim#client_secret"}
    grants: [client_credentials]
`, p.srv.URL+"/token"),
		Gateway:  gateway.Config{RateLimit: 1e9, RateBurst: 1 << 30},
		NoWorker: true,
		LogTo:    logFile(t, c.logDir),
	})
	ws := startWorkers(t, s, e2e.BuildTokenwarden(t, filepath.Join(t.TempDir(), "tokenwarden")), c.logDir, c.workers)
	ps := parts(ws, strings.TrimSuffix(os.Getenv("TOKENWARDEN_TEST_STACK"), "/stack.json"))
	ctx := context.Background()
	rep := &report{config: c}

	rep.baseRSSKiB = workersKiB(ws, "VmRSS")
	cpu0 := cpuSnapshot(ps)
	began := time.Now()
	deadline := time.Time{}
	if c.enrollWithin > 0 {
		deadline = began.Add(c.enrollWithin)
	}
	created := enroll(ctx, t, s, c.links, deadline)
	rep.created = len(created)
	ids := waitActive(ctx, t, s, len(created), deadline)
	rep.active = len(ids)
	rep.enrollRate = float64(len(ids)) / time.Since(began).Seconds()
	rep.enrollCPU = diff(cpuSnapshot(ps), cpu0)
	rep.idleRSSKiB = workersKiB(ws, "VmRSS")

	issued0 := p.issued.Load()
	cpu1 := cpuSnapshot(ps)
	rctx, stop := context.WithTimeout(ctx, c.run)
	defer stop()
	reads := readLoad(rctx, s, ids, c.readsPerSec)
	<-rctx.Done()
	rep.readCounts = reads()
	rep.runCPU, rep.runRefreshes = diff(cpuSnapshot(ps), cpu1), p.issued.Load()-issued0
	rep.measureHistories(ctx, t, s, ids)

	// Quiesce: the provider issues nothing more, and every token it
	// issued must reach its link's count (the activity writes it, or the
	// workflow after it); a difference is a refresh lost or counted twice.
	planted := int64(0)
	if !c.long {
		// The count check's self-test: a token issued that no link
		// counts (one the test asks for itself) must show.
		p.issue(t)
		planted = 1
	}
	p.stopped.Store(true)
	issued := p.issued.Load()
	enrolled, refreshes := waitCounted(ctx, t, s, issued-planted, 2*time.Minute)
	if planted > 0 && issued == enrolled+refreshes {
		t.Errorf("the count check cannot fail: a token no link counts went unnoticed")
	}
	// Each enrollment is one issue too.
	rep.providerRefreshes, rep.linkRefreshes = issued-planted-enrolled, refreshes
	rep.peakRSSKiB = workersKiB(ws, "VmHWM")
	rep.measureAudit(ctx, t, s)
	if rep.expired > 0 {
		t.Errorf("%d tokens served already expired", rep.expired)
	}
	if rep.providerRefreshes != rep.linkRefreshes {
		t.Errorf("the provider issued %d refreshes, the links count %d", rep.providerRefreshes, rep.linkRefreshes)
	}
	if rep.runRefreshes == 0 {
		t.Errorf("no refresh during the run")
	}
	rep.write(t)
}

func logFile(t *testing.T, dir string) *os.File {
	f, err := os.Create(dir + "/scale-gateway.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func diff(a, b map[string]float64) map[string]float64 {
	m := map[string]float64{}
	for k, v := range a {
		m[k] = v - b[k]
	}
	return m
}

// enroll creates n client-credentials links through the gateway, 32 at a
// time, and returns their IDs; with a deadline, it stops creating links
// then.
func enroll(ctx context.Context, t *testing.T, s *e2e.Stack, n int, deadline time.Time) []string {
	ids := make([]string, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline.IsZero() || time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "sim", UserID: fmt.Sprintf("u%d", i), Grant: "client_credentials"}, "")
				if err != nil {
					if failed.Add(1) == 1 {
						t.Logf("creating a link failed: %v", err)
					}
					continue
				}
				ids[i] = l.ID
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d link creations failed", failed.Load(), n)
	}
	return slices.DeleteFunc(ids, func(id string) bool { return id == "" })
}

// waitActive polls the links table until n links are active, or, when
// deadline is set, until then, and returns the active links' IDs. Without
// a deadline it gives up (and fails) after half an hour and then some.
func waitActive(ctx context.Context, t *testing.T, s *e2e.Stack, n int, deadline time.Time) []string {
	bounded := !deadline.IsZero()
	if !bounded {
		deadline = time.Now().Add(30*time.Minute + time.Duration(n)*20*time.Millisecond)
	}
	for {
		var active int
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM links WHERE status = 'active'`).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if active >= n || time.Now().After(deadline) {
			if active < n && !bounded {
				t.Fatalf("only %d of %d links active after half an hour", active, n)
			}
			return activeIDs(ctx, t, s)
		}
		time.Sleep(time.Second)
	}
}

func activeIDs(ctx context.Context, t *testing.T, s *e2e.Stack) []string {
	rows, err := s.Pool.Query(ctx, `SELECT id FROM links WHERE status = 'active' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// waitCounted polls until the links account for issued tokens (one per
// link that enrolled, plus its refreshes), or limit passes, and returns
// the links that enrolled and the refreshes they count.
func waitCounted(ctx context.Context, t *testing.T, s *e2e.Stack, issued int64, limit time.Duration) (enrolled, refreshes int64) {
	deadline := time.Now().Add(limit)
	for {
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE expires_at IS NOT NULL), coalesce(sum(refresh_count), 0) FROM links`).
			Scan(&enrolled, &refreshes); err != nil {
			t.Fatal(err)
		}
		if enrolled+refreshes >= issued || time.Now().After(deadline) {
			return enrolled, refreshes
		}
		time.Sleep(time.Second)
	}
}

// readCounts are the callers' token reads: served, served already
// expired, and failed (an error answer: no valid token to hand out), with
// the failures by cause and the reads' latencies.
type readCounts struct {
	reads, expired, failed int64
	causes                 map[string]int64
	latencies              []time.Duration
}

// failureCause names a failed read by its API error code, or the kind of
// client error.
func failureCause(err error) string {
	var ae *tokenwarden.APIError
	switch {
	case errors.As(err, &ae):
		return fmt.Sprintf("%d %s", ae.Status, ae.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "client timeout"
	}
	return "transport error"
}

// readLoad reads random links' tokens at perSec reads a second (callers
// as backends make them: steady, not a tight loop that would starve the
// engine of the CPU it shares here) until ctx ends; the returned func
// waits and counts.
func readLoad(ctx context.Context, s *e2e.Stack, ids []string, perSec int) func() readCounts {
	var mu sync.Mutex
	rc := readCounts{causes: map[string]int64{}}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(perSec))
	jobs := make(chan string)
	go func() {
		defer close(jobs)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case jobs <- ids[rand.IntN(len(ids))]:
				default: // every caller busy: the tick is dropped
				}
			}
		}
	}()
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				began := time.Now()
				tok, err := s.Client.Token(ctx, id, 0)
				took := time.Since(began)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() == nil:
					rc.failed++
					rc.causes[failureCause(err)]++
				case err != nil: // the run ended mid-read
				default:
					rc.reads++
					rc.latencies = append(rc.latencies, took)
					if !tok.Expiry.IsZero() && !tok.Expiry.After(time.Now()) {
						rc.expired++
					}
				}
				mu.Unlock()
			}
		}()
	}
	return func() readCounts {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return rc
	}
}
