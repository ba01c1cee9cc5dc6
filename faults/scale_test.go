package faults

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/e2e"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// binary builds cmd/tokenwarden once per run of this package.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tokenwarden-faults-")
		if buildErr != nil {
			return
		}
		buildBin = e2e.BuildTokenwarden(t, filepath.Join(buildDir, "tokenwarden"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// startProcess runs a `tokenwarden worker` or `tokenwarden gateway` for the
// rest of the test, its output in the rig's log.
func (r *rig) startProcess(t *testing.T, bin string, env []string, args ...string) *e2e.Process {
	t.Helper()
	p := e2e.StartProcess(t, bin, env, r.e2e.Logs, args...)
	t.Cleanup(func() { p.Stop(20 * time.Second) })
	return p
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestTwoGatewaysTwoWorkers runs two `tokenwarden worker` and two
// `tokenwarden gateway` processes on one namespace, schema and Vault
// prefix, and hammers both gateways' token endpoints for N links at once.
// Every refresh the peer answered is one a workflow counted (nothing
// refreshed twice), the peer rejected none, and no served token was
// expired.
func TestTwoGatewaysTwoWorkers(t *testing.T) {
	t.Parallel()
	n := pick(5, 20)
	hammer := pick(20*time.Second, 90*time.Second)
	perGateway := pick(4, 8)
	r := newSharedRig(t, nil, "", nil)
	rec := &row{Fault: "6 two gateways + two workers (processes)", Links: n}
	record(t, rec)
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	key := "bootstrap-" + randomString()
	r.remember(key)
	base := r.e2e.Env()
	for i := 0; i < 2; i++ {
		r.startProcess(t, bin, base, "worker")
	}
	var gateways []string
	for i := 0; i < 2; i++ {
		addr := freeAddr(t)
		r.startProcess(t, bin, append(append([]string(nil), base...),
			"TOKENWARDEN_LISTEN="+addr, "TOKENWARDEN_BOOTSTRAP_API_KEY="+key), "gateway")
		gateways = append(gateways, "http://"+addr)
	}
	for _, g := range gateways {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			resp, err := http.Get(g + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway %s not healthy within 2m (last error %v)", g, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	ids := r.activeLinks(ctx, n)
	before := r.states(ctx, ids)
	hctx, stop := context.WithTimeout(ctx, hammer)
	var readers []*reader
	var waits []func()
	for _, g := range gateways {
		rd := newReader(g, key, ids, time.Duration(perGateway)*25*time.Millisecond) // ~40/s: under the 50/s per-key rate limit
		readers = append(readers, rd)
		waits = append(waits, rd.run(hctx, perGateway))
	}
	<-hctx.Done()
	stop()
	for _, w := range waits {
		w()
	}

	served, expired, all500, reads := 0, 0, 0, 0
	var notes []string
	for i, rd := range readers {
		s, e, statuses, missing := rd.summary()
		served += s
		expired += e
		all500 += statuses[http.StatusInternalServerError]
		for _, c := range statuses {
			reads += c
		}
		notes = append(notes, fmt.Sprintf("gateway %d: %s", i+1, statusString(statuses)))
		if missing > 0 {
			t.Errorf("gateway %d: %d 502/503 answers without Retry-After", i+1, missing)
		}
		if codes := rd.errorCodes(); codes != "" {
			t.Logf("gateway %d error answers: %s", i+1, codes)
		}
	}
	if served == 0 {
		t.Fatal("no token served")
	}
	if expired > 0 {
		t.Errorf("%d expired tokens served", expired)
	}
	if all500 > 0 {
		t.Errorf("%d answers 500", all500)
	}
	sts := r.states(ctx, ids)
	bad := noBadStatus(t, sts)
	_, errs := r.refreshErrors(ctx)
	during := 0
	for id, st := range sts {
		during += st.Refreshes - before[id].Refreshes
	}
	if errs > 0 {
		t.Errorf("the peer rejected %d refresh requests: two refreshers spent the same refresh token", errs)
	}
	peer, counted, agree := r.countsAgree(ctx, ids)
	if !agree {
		t.Errorf("the peer answered %d refreshes, the workflows count %d: a refresh ran twice", peer, counted)
	}
	lost := r.lost(ctx, ids)
	rec.Lost, rec.ServedExpired, rec.Errors = lost+bad, expired, errs+all500
	rec.Notes = fmt.Sprintf("%d reads in %s, %d tokens served, %d refreshes meanwhile (peer total %d = workflows %d); %s",
		reads, hammer, served, during, peer, counted, strings.Join(notes, "; "))
	t.Log(rec.Notes)
	r.e2e.ScanForSecrets(ctx)
}
