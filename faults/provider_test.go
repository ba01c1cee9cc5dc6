package faults

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// workerHTTPTimeout is the provider HTTP timeout of the fault tests'
// worker, so that a hung token endpoint is a short test.
const workerHTTPTimeout = 1500 * time.Millisecond

// providerFault is one way the token endpoint misbehaves.
type providerFault struct {
	name  string
	start func(ctx context.Context, r *rig, px *tokenProxy) error
	// minGap, if set, is the least time between two refresh requests of
	// a link the engine must keep (Retry-After).
	minGap time.Duration
	// hold keeps the fault on this long after every link is degraded, so
	// that the workflow's own backoff meets it too.
	hold time.Duration
}

func peerFault(f oidcpeer.Fault) func(context.Context, *rig, *tokenProxy) error {
	return func(ctx context.Context, r *rig, _ *tokenProxy) error {
		f.Count = 100000
		f.GrantType = "refresh_token"
		return r.peer.InjectFault(ctx, f)
	}
}

func httpFault(status int) providerFault {
	return providerFault{name: fmt.Sprintf("HTTP %d", status), start: peerFault(oidcpeer.Fault{Status: status})}
}

var (
	faultTimeout = providerFault{name: "timeout (reply after 3s, client timeout 1.5s)",
		start: peerFault(oidcpeer.Fault{Status: 503, Delay: 3 * time.Second})}
	faultReset = providerFault{name: "connection reset", start: func(_ context.Context, _ *rig, px *tokenProxy) error {
		px.setReset(true)
		return nil
	}}
	faultMalformed = providerFault{name: "malformed JSON (200)", start: peerFault(oidcpeer.Fault{Status: 200, Malformed: true})}
	fault429       = providerFault{name: "HTTP 429 Retry-After 7s", minGap: 7 * time.Second, hold: 10 * time.Second,
		start: peerFault(oidcpeer.Fault{Status: 429, RetryAfter: 7 * time.Second})}
)

// TestProviderFaultsTransport: the provider hangs, resets connections or
// answers 5xx. Each fault lasts until every link has been degraded, then
// clears: every link must recover to active, the provider must not be
// hammered meanwhile, no refresh token is replayed, and the gateway,
// read throughout, never serves an expired token.
func TestProviderFaultsTransport(t *testing.T) {
	t.Parallel()
	faults := []providerFault{faultTimeout, faultReset, httpFault(503)}
	if full() {
		faults = append(faults, httpFault(500), httpFault(502))
	}
	runProviderFaults(t, faults, true)
}

// TestProviderFaultsReplies: the provider answers 429 with Retry-After
// (which must be honoured: measured gap between a link's refresh
// requests) or a 200 with a body that is not JSON. No gateway readers
// here: a reader's synchronous refresh is a deliberate extra attempt.
func TestProviderFaultsReplies(t *testing.T) {
	t.Parallel()
	runProviderFaults(t, []providerFault{fault429, faultMalformed}, false)
}

func runProviderFaults(t *testing.T, faults []providerFault, readers bool) {
	var px *tokenProxy
	r := newSharedRig(t, func(p *oidcpeer.Peer) string {
		px = newTokenProxy(t, p.TokenURL)
		return px.URL(p.TokenURL)
	}, "", nil)
	r.startWorker(r.openRegistry(workerHTTPTimeout))
	n := pick(2, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)

	var rd *reader
	if readers {
		rd = newReader(r.Gateway, r.APIKey, ids, 500*time.Millisecond)
		rctx, stop := context.WithCancel(ctx)
		wait := rd.run(rctx, 1)
		defer func() { stop(); wait() }()
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			r.t = t
			defer func() { r.t = t }()
			rec := &row{Fault: "5 provider: " + f.name, Links: n}
			record(t, rec)
			runProviderFault(ctx, t, r, px, rd, ids, f, rec)
		})
		if t.Failed() {
			break
		}
	}
	if r.e2e != nil {
		r.t = t
		r.e2e.ScanForSecrets(ctx)
	}
}

func runProviderFault(ctx context.Context, t *testing.T, r *rig, px *tokenProxy, rd *reader, ids []string, f providerFault, rec *row) {
	before := r.states(ctx, ids)
	s0, err := r.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var served0, expired0 int
	if rd != nil {
		served0, expired0, _, _ = rd.summary()
	}
	recovered0 := 0
	for _, id := range ids {
		recovered0 += countEvents(t, r, id, "recovered")
	}

	began := time.Now()
	if err := f.start(ctx, r, px); err != nil {
		t.Fatalf("inject: %v", err)
	}
	// The fault lasts until every link has been degraded (its refresh
	// and the activity's retries failed).
	degraded := map[string]bool{}
	for len(degraded) < len(ids) {
		if time.Since(began) > 2*time.Minute {
			t.Fatalf("only %d of %d links degraded within 2m of the fault", len(degraded), len(ids))
		}
		for id, st := range r.states(ctx, ids) {
			switch st.Status {
			case workflows.StatusDegraded:
				degraded[id] = true
			case workflows.StatusFailed, workflows.StatusReauthRequired, workflows.StatusRevoked:
				t.Fatalf("link %s went %s during a transient fault (%s)", id, st.Status, st.LastError)
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(f.hold) // the rest of the fault, if any
	ended := time.Now()
	px.setReset(false)
	if err := r.peer.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	window := ended.Sub(began)

	// Then every link recovers on its own.
	for _, id := range ids {
		want := before[id].Refreshes + 1
		r.waitFor(ctx, id, "recovering after the fault", 2*time.Minute, func(st workflows.State) bool {
			return st.Status == workflows.StatusActive && st.Refreshes >= want
		})
	}
	recovered := time.Since(ended)
	// The audit trail is written in the background: give it a moment.
	recoveredEvents := 0
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		recoveredEvents = -recovered0
		for _, id := range ids {
			recoveredEvents += countEvents(t, r, id, "recovered")
		}
		if recoveredEvents >= len(ids) || time.Now().After(deadline) {
			break
		}
	}
	if recoveredEvents < len(ids) {
		t.Errorf("%d recovered events for %d degraded links", recoveredEvents, len(ids))
	}

	// Never a tight loop: each link makes at most one activity run of 4
	// attempts (1+2+4 s apart) per 8 s, plus the gateway's synchronous
	// refreshes when readers run.
	hits := px.refreshHits(began, ended)
	bound := len(ids) * 4 * (int(window/(8*time.Second)) + 2)
	if len(hits) > bound {
		t.Errorf("%d refresh requests in %s of fault for %d links: more than %d (a retry loop)", len(hits), window.Round(time.Second), len(ids), bound)
	}
	gapNote := ""
	if f.minGap > 0 {
		gap, pairs := minGap(hits)
		gapNote = fmt.Sprintf("; min gap between a link's requests %s over %d pairs (Retry-After %s)", gap.Round(10*time.Millisecond), pairs, f.minGap)
		if pairs == 0 {
			t.Errorf("no link retried during the 429 fault")
		} else if gap < f.minGap-100*time.Millisecond {
			t.Errorf("Retry-After not honoured: a link retried %s after a 429 asking for %s", gap.Round(10*time.Millisecond), f.minGap)
		}
	}
	s1, err := r.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := (s1.TokenErrorsByGrantType["refresh_token"] - s0.TokenErrorsByGrantType["refresh_token"]) - (s1.FaultsInjected - s0.FaultsInjected)
	if errs > 0 {
		t.Errorf("the peer rejected %d refresh requests that were not injected faults", errs)
	}
	expired, served := 0, 0
	if rd != nil {
		s, e, statuses, missing := rd.summary()
		served, expired = s-served0, e-expired0
		if expired > 0 {
			t.Errorf("the gateway served %d expired tokens", expired)
		}
		if statuses[http.StatusInternalServerError] > 0 || missing > 0 {
			t.Errorf("gateway answers: %s (%d 502/503 without Retry-After)", statusString(statuses), missing)
		}
	}
	lost := r.lost(ctx, ids)
	rec.Lost, rec.ServedExpired, rec.Errors = lost, expired, errs
	rec.Notes = fmt.Sprintf("all degraded after %s, active %s after it cleared; %d refresh requests during the fault (bound %d)%s",
		window.Round(time.Second), recovered.Round(time.Second), len(hits), bound, gapNote)
	if rd != nil {
		rec.Notes += fmt.Sprintf("; %d reads served", served)
	}
	t.Log(rec.Notes)
}

// TestProviderOddReplies uses a small OAuth server of this package for
// replies the peer never sends: no expires_in (the engine assumes the
// catalog's default lifetime, and keeps refreshing on that schedule without
// looping), and refresh replies without a new refresh token (the engine
// keeps the one it has, which stays valid at a server that does not rotate).
func TestProviderOddReplies(t *testing.T) {
	t.Parallel()
	noExp := newFakeOAuth(t, true, true)
	noRot := newFakeOAuth(t, false, false)
	r := newSharedRig(t, nil, noExp.catalog("fake-noexp")+noRot.catalog("fake-norot"), map[string]map[string]string{
		"providers/fake-noexp": {"client_secret": randomString()},
		"providers/fake-norot": {"client_secret": randomString()},
	})
	r.startWorker(r.openRegistry(workerHTTPTimeout))
	n := pick(2, 5)
	window := pick(15*time.Second, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	for _, c := range []struct {
		name     string
		provider string
		fake     *fakeOAuth
	}{
		{"missing expires_in", "fake-noexp", noExp},
		{"refresh reply without a new refresh token", "fake-norot", noRot},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.t = t
			rec := &row{Fault: "5 provider: " + c.name, Links: n}
			record(t, rec)
			var ids []string
			for i := 0; i < n; i++ {
				pw := randomString()
				r.remember(pw)
				ids = append(ids, r.createLink(ctx, c.provider, providers.GrantPassword, providers.Grant{Username: "alice", Password: pw}))
			}
			for _, id := range ids {
				r.waitFor(ctx, id, "enrolled", time.Minute, isActive)
			}
			rd := newReader(r.Gateway, r.APIKey, ids, 500*time.Millisecond)
			rctx, stop := context.WithCancel(ctx)
			wait := rd.run(rctx, 1)
			ref0, _, _ := c.fake.counts()
			began := time.Now()
			time.Sleep(window) // watch the links live through the window
			ref1, errs, distinct := c.fake.counts()
			stop()
			wait()
			sts := r.states(ctx, ids)
			bad := noBadStatus(t, sts)
			refreshes := ref1 - ref0
			// A 5 s lifetime refreshed ~1 s early: about one refresh per
			// link every 4 s; never faster than one a second.
			lo, hi := n*int(window/(6*time.Second)), n*(int(window/time.Second)+1)
			if refreshes < lo || refreshes > hi {
				t.Errorf("%d refreshes for %d links in %s: want %d..%d", refreshes, n, window, lo, hi)
			}
			if errs > 0 {
				t.Errorf("the server rejected %d requests", errs)
			}
			for id, st := range sts {
				if c.fake.noExpiresIn {
					if st.ExpirySource != "default" && st.ExpirySource != "stored" {
						t.Errorf("link %s: expiry source %q, want default", id, st.ExpirySource)
					}
					if life := st.ExpiresAt.Sub(st.ObtainedAt); life < 4*time.Second || life > 6*time.Second {
						t.Errorf("link %s: assumed lifetime %s, want the catalog's 5s", id, life)
					}
				}
				tok, err := r.Secrets.ReadToken(ctx, tenant, id)
				if err != nil {
					t.Fatal(err)
				}
				r.remember(tok.Value.AccessToken, tok.Value.RefreshToken)
				if tok.Value.RefreshToken == "" {
					t.Errorf("link %s lost its refresh token", id)
				}
			}
			if !c.fake.rotate && distinct != n {
				t.Errorf("%d distinct refresh tokens presented by %d links: the kept refresh token was not reused", distinct, n)
			}
			lost := 0
			for _, id := range ids {
				if err := r.refreshNow(ctx, id); err != nil {
					lost++
					t.Errorf("link %s cannot refresh: %v", id, err)
				}
			}
			served, expired, statuses, _ := rd.summary()
			if expired > 0 {
				t.Errorf("the gateway served %d expired tokens", expired)
			}
			if statuses[http.StatusInternalServerError] > 0 {
				t.Errorf("gateway answers: %s", statusString(statuses))
			}
			rec.Lost, rec.ServedExpired, rec.Errors = lost+bad, expired, errs
			rec.Notes = fmt.Sprintf("%d refreshes in %s (expected %d..%d); %d reads served, gateway %s", refreshes, time.Since(began).Round(time.Second), lo, hi, served, statusString(statuses))
			t.Log(rec.Notes)
		})
	}
	r.t = t
	r.e2e.ScanForSecrets(ctx)
}
