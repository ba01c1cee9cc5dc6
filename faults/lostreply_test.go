package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// hooks is a tenant's webhook endpoint that keeps the events it gets.
type hooks struct {
	mu  sync.Mutex
	got map[string]bool // type + " " + link
}

func newHooks(t *testing.T, r *rig) *hooks {
	h := &hooks{got: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev tokenwarden.WebhookEvent
		body, _ := io.ReadAll(req.Body)
		if json.Unmarshal(body, &ev) == nil {
			h.mu.Lock()
			h.got[ev.Type+" "+ev.Data.LinkID] = true
			h.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c := tokenwarden.NewClient(r.Gateway, r.APIKey)
	if _, err := c.SetWebhook(context.Background(), srv.URL, []string{tokenwarden.EventLinkReauthRequired}); err != nil {
		t.Fatalf("set webhook: %v", err)
	}
	return h
}

func (h *hooks) has(typ, link string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[typ+" "+link]
}

// lostReplyModes are the two ways a reply goes missing after the provider
// acted: the connection is cut, or the reply comes later than the
// engine's HTTP timeout.
var lostReplyModes = []string{"cut", "late"}

// TestReplyLostAfterRotation: the provider receives a refresh and rotates
// the refresh token, and its reply never arrives.
//
// With strict reuse detection (oidc-provider's rule) the grant is gone:
// the only token the engine holds is the one just spent, and sending it
// again revokes the grant. The link must say so: reauth_required within
// that one refresh attempt, with a last_error naming the lost reply, the
// link.reauth_required webhook, and no refresh loop.
//
// With a reuse grace window (Okta, Auth0, Keycloak allow one) the engine's
// immediate retry with the same token gets the reply again: no link lost.
func TestReplyLostAfterRotation(t *testing.T) {
	t.Parallel()
	for _, how := range lostReplyModes {
		t.Run("strict/"+how, func(t *testing.T) { lostReplyStrict(t, how) })
		t.Run("grace/"+how, func(t *testing.T) { lostReplyGrace(t, how) })
	}
}

func lostReplyRig(t *testing.T, opts oidcpeer.Options) (*rig, *tokenProxy) {
	var px *tokenProxy
	r := newSharedRigWith(t, opts, func(p *oidcpeer.Peer) string {
		px = newTokenProxy(t, p.TokenURL)
		return px.URL(p.TokenURL)
	}, "", nil)
	return r, px
}

func lostReplyStrict(t *testing.T, how string) {
	n := pick(2, 5)
	r, px := lostReplyRig(t, peerOptions)
	rec := &row{Fault: "7 reply lost after rotation (" + how + "), strict reuse detection", Links: n}
	record(t, rec)
	hk := newHooks(t, r)
	r.startWorker(r.openRegistry(workerHTTPTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)
	armed := time.Now()
	px.loseReplies(func(string) bool { return true }, how, 2*workerHTTPTimeout)

	for _, id := range ids {
		st := r.waitFor(ctx, id, "reauth_required after the lost reply", time.Minute, func(st workflows.State) bool {
			return st.Status == workflows.StatusReauthRequired
		})
		if !strings.Contains(st.LastError, "reply that never arrived") {
			t.Errorf("link %s: last_error %q does not name the lost reply", id, st.LastError)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !hk.has(tokenwarden.EventLinkReauthRequired, id) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if !hk.has(tokenwarden.EventLinkReauthRequired, id) {
			t.Errorf("link %s: no link.reauth_required webhook", id)
		}
	}
	// One refresh, one retry with the same token, then nothing: no loop.
	settled := len(px.refreshHits(armed, time.Now()))
	time.Sleep(5 * time.Second)
	after := len(px.refreshHits(armed, time.Now()))
	if settled > 2*n || after != settled {
		t.Errorf("refresh requests after the lost replies: %d, then %d five seconds later; want at most %d and no more", settled, after, 2*n)
	}
	if r.e2e != nil {
		r.e2e.ScanForSecrets(ctx)
	}
	rec.Notes = fmt.Sprintf("%d replies lost; every link reauth_required naming the lost reply, webhook sent; %d refresh requests in all, none after", px.lostCount(), after)
	t.Log(rec.Notes)
}

func lostReplyGrace(t *testing.T, how string) {
	n := pick(2, 5)
	opts := peerOptions
	opts.RefreshReuseGrace = 30 * time.Second
	r, px := lostReplyRig(t, opts)
	rec := &row{Fault: "7 reply lost after rotation (" + how + "), reuse grace window", Links: n}
	record(t, rec)
	r.startWorker(r.openRegistry(workerHTTPTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := r.activeLinks(ctx, n)
	before := r.states(ctx, ids)
	px.loseReplies(func(string) bool { return true }, how, 2*workerHTTPTimeout)
	// Every link loses one reply per refresh for a while: three refreshes
	// each, every one with its reply lost and retried.
	for _, id := range ids {
		want := before[id].Refreshes + 3
		r.waitFor(ctx, id, "refreshing through lost replies", 2*time.Minute, func(st workflows.State) bool {
			return st.Refreshes >= want
		})
	}
	px.loseReplies(nil, "", 0)
	lost := r.lost(ctx, ids) + noBadStatus(t, r.states(ctx, ids))
	stats, err := r.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rejected := stats.TokenErrorsByGrantType["refresh_token"]
	if lost > 0 || rejected > 0 {
		t.Errorf("%d links lost, %d refresh requests rejected, want none", lost, rejected)
	}
	if stats.RefreshReuseGraceHits < px.lostCount() {
		t.Errorf("%d replies lost but only %d answered again within the grace window", px.lostCount(), stats.RefreshReuseGraceHits)
	}
	if r.e2e != nil {
		r.e2e.ScanForSecrets(ctx)
	}
	rec.Lost, rec.Errors = lost, rejected
	rec.Notes = fmt.Sprintf("%d replies lost, each retried at once with the same token and answered again within the window", px.lostCount())
	t.Log(rec.Notes)
}
