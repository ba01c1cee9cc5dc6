// Package scale is `make scale`: many links against a fast simulated
// provider on the real Temporal server (PostgreSQL), measured. It writes
// docs/results/scale.md. Without TOKENWARDEN_SCALE=1 it skips: it is a
// load run of many minutes, not a test of `make test`.
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/gateway"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/results"
	"github.com/tokenwarden/tokenwarden/workflows"
)

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
// counts what it issues.
type provider struct {
	srv    *httptest.Server
	issued atomic.Int64
	life   time.Duration
}

func newProvider(t *testing.T, life time.Duration) *provider {
	p := &provider{life: life}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("scale-%d-%d", n, rand.Int64()),
			"token_type": "Bearer", "expires_in": int(life.Seconds())})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// TestScale creates TOKENWARDEN_SCALE_LINKS links through the gateway,
// keeps them refreshing for TOKENWARDEN_SCALE_DURATION with tokens of
// TOKENWARDEN_SCALE_TOKEN_LIFETIME while callers read tokens, and reports.
func TestScale(t *testing.T) {
	if os.Getenv("TOKENWARDEN_SCALE") == "" {
		t.Skip("a load run: make scale runs it (TOKENWARDEN_SCALE=1)")
	}
	n := envInt("TOKENWARDEN_SCALE_LINKS", 10000)
	life := envDuration("TOKENWARDEN_SCALE_TOKEN_LIFETIME", 5*time.Minute)
	run := envDuration("TOKENWARDEN_SCALE_DURATION", 20*time.Minute)
	p := newProvider(t, life)
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
		Gateway: gateway.Config{RateLimit: 1e9, RateBurst: 1 << 30},
	})
	ctx := context.Background()
	rep := &report{links: n, life: life, run: run}

	began := time.Now()
	ids := enroll(ctx, t, s, n)
	waitActive(ctx, t, s, n, 30*time.Minute)
	rep.enrollRate = float64(n) / time.Since(began).Seconds()

	cpu0, tcpu0 := cpuSeconds("self"), temporalCPU(t)
	issued0 := p.issued.Load()
	rctx, stop := context.WithTimeout(ctx, run)
	defer stop()
	rd := readLoad(rctx, s, ids, 8)
	<-rctx.Done()
	reads, expired := rd()
	rep.reads, rep.expired = reads, expired
	refreshes := p.issued.Load() - issued0
	rep.cpuPer1000 = (cpuSeconds("self") - cpu0 + temporalCPU(t) - tcpu0) / float64(max(refreshes, 1)) * 1000
	rep.rssMiB = float64(rssKiB()) / 1024

	rep.measureAudit(ctx, t, s, p.issued.Load())
	rep.measureHistories(ctx, t, s, ids)
	if expired > 0 {
		t.Errorf("%d tokens served already expired", expired)
	}
	if rep.providerRefreshes != rep.linkRefreshes {
		t.Errorf("the provider issued %d refreshes, the links count %d", rep.providerRefreshes, rep.linkRefreshes)
	}
	rep.write(t)
}

// enroll creates n client-credentials links through the gateway, 32 at a
// time.
func enroll(ctx context.Context, t *testing.T, s *e2e.Stack, n int) []string {
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				l, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "sim", UserID: fmt.Sprintf("u%d", i), Grant: "client_credentials"}, "")
				if err != nil {
					failed.Add(1)
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
	return ids
}

// waitActive polls the links table until n links are active.
func waitActive(ctx context.Context, t *testing.T, s *e2e.Stack, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		var active int
		if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM links WHERE status = 'active'`).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if active >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d links active after %s", active, n, limit)
		}
		time.Sleep(time.Second)
	}
}

// readLoad reads random links' tokens with c callers until ctx ends; the
// returned func waits and counts reads and tokens served already expired.
func readLoad(ctx context.Context, s *e2e.Stack, ids []string, c int) func() (reads, expired int64) {
	var readsN, expiredN atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				tok, err := s.Client.Token(ctx, ids[rand.IntN(len(ids))], 0)
				if err != nil {
					continue
				}
				readsN.Add(1)
				if !tok.Expiry.IsZero() && !tok.Expiry.After(time.Now()) {
					expiredN.Add(1)
				}
			}
		}()
	}
	return func() (int64, int64) { wg.Wait(); return readsN.Load(), expiredN.Load() }
}

// cpuSeconds is the user+system CPU time of a process (/proc/<pid>/stat).
func cpuSeconds(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// temporalCPU is the Temporal server's CPU time, from the stack's pid file.
func temporalCPU(t *testing.T) float64 {
	dir := strings.TrimSuffix(os.Getenv("TOKENWARDEN_TEST_STACK"), "/stack.json")
	b, err := os.ReadFile(dir + "/run/temporal.pid")
	if err != nil {
		return 0
	}
	return cpuSeconds(strings.TrimSpace(string(b)))
}

func rssKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}

type report struct {
	links                            int
	life, run                        time.Duration
	enrollRate                       float64
	reads, expired                   int64
	providerRefreshes, linkRefreshes int64
	lagP50, lagP99, lagMax           time.Duration
	eventsPerRefresh                 float64
	bytesPerLink                     float64
	cpuPer1000, rssMiB               float64
}

// measureAudit reads refresh counts, lags and storage from PostgreSQL.
func (r *report) measureAudit(ctx context.Context, t *testing.T, s *e2e.Stack, issued int64) {
	// Each link's enrollment is one issue too.
	r.providerRefreshes = issued - int64(r.links)
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(sum(refresh_count), 0) FROM links`).Scan(&r.linkRefreshes); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Pool.Query(ctx, `SELECT extract(epoch FROM occurred_at - (detail->>'scheduled_for')::timestamptz)
		FROM link_events WHERE type = 'refreshed' AND detail ? 'scheduled_for'`)
	if err != nil {
		t.Fatal(err)
	}
	var lags []float64
	for rows.Next() {
		var l float64
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lags = append(lags, l)
	}
	rows.Close()
	sort.Float64s(lags)
	at := func(q float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return time.Duration(lags[min(len(lags)-1, int(q*float64(len(lags))))] * float64(time.Second))
	}
	r.lagP50, r.lagP99, r.lagMax = at(0.5), at(0.99), at(1)
	var bytes int64
	if err := s.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('links') + pg_total_relation_size('link_events')`).Scan(&bytes); err != nil {
		t.Fatal(err)
	}
	r.bytesPerLink = float64(bytes) / float64(r.links)
}

// measureHistories averages history events per refresh over a sample.
func (r *report) measureHistories(ctx context.Context, t *testing.T, s *e2e.Stack, ids []string) {
	events, refreshes := 0, 0
	for _, id := range ids[:min(len(ids), 20)] {
		st, err := s.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		it := s.Temporal.GetWorkflowHistory(ctx, workflows.WorkflowID(e2e.Tenant, id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				t.Fatal(err)
			}
			events++
		}
		refreshes += st.Refreshes
	}
	r.eventsPerRefresh = float64(events) / float64(max(refreshes, 1))
}

func (r *report) write(t *testing.T) {
	table := fmt.Sprintf(`| links | token lifetime | run | enrolled (links/s) | refresh lag p50 / p99 / max | token reads | served expired | refreshes at provider / in links | history events per refresh (incl. enrollment) | PostgreSQL bytes per link | CPU s per 1 000 refreshes (engine + Temporal) | max RSS of the process running gateway, worker and load |
|---:|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|
| %d | %s | %s | %.0f | %s / %s / %s | %d | %d | %d / %d | %.1f | %.0f | %.1f | %.0f MiB |
`, r.links, r.life, r.run, r.enrollRate, r.lagP50.Round(time.Millisecond), r.lagP99.Round(time.Millisecond), r.lagMax.Round(time.Millisecond),
		r.reads, r.expired, r.providerRefreshes, r.linkRefreshes, r.eventsPerRefresh, r.bytesPerLink, r.cpuPer1000, r.rssMiB)
	t.Log("\n" + table)
	out := os.Getenv("TOKENWARDEN_SCALE_OUT")
	if out == "" {
		return
	}
	doc := results.ThisMachine().Header("Scale", "make scale") + table
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Error(err)
	}
}
