package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
)

// holdRefreshReplies makes tap hold back each successful refresh reply
// (the peer has rotated the refresh token by then) for hold, telling
// held as it starts: the worst moment for the worker to be stopped.
func holdRefreshReplies(tap *httpTap, hold time.Duration) (held <-chan struct{}) {
	ch := make(chan struct{}, 1)
	tap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if status == http.StatusOK && grantOf(body) == "refresh_token" {
			select {
			case ch <- struct{}{}:
			default:
			}
			time.Sleep(hold)
		}
		return true
	})
	return ch
}

// catalogVia writes a copy of the engine's catalog whose token requests
// go to proxy instead of from, for a second worker process.
func (e *engine) catalogVia(from, proxy string) string {
	e.t.Helper()
	b, err := os.ReadFile(e.CatalogPath)
	if err != nil {
		e.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(from)) {
		e.t.Fatalf("catalog does not name %s", from)
	}
	path := filepath.Join(e.t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), from, proxy)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// TestWorkerTerminatedMidRefresh is a rolling deploy: the worker process
// gets SIGTERM each time the peer has just rotated a link's refresh token
// and the reply is on its way back (held for a moment by a proxy), then
// starts again, while a second worker runs throughout. A stopping worker
// lets its running activities finish: no link may be lost and no refresh
// token replayed, with no allowance (that is for SIGKILL only). Five
// restarts in make test; fifty under TOKENWARDEN_FAULTS=full.
func TestWorkerTerminatedMidRefresh(t *testing.T) {
	t.Parallel()
	// The restarted worker reaches the peer's token endpoint through tap,
	// the steady one through a tap of its own.
	e, tap := newEngineWithTap(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	held := holdRefreshReplies(tap, 1500*time.Millisecond)
	steady := newHTTPTap(t, e.peer.TokenURL)
	bin := buildBinary(t)
	w := e.workerProcess(bin)
	w2 := e.workerProcess(bin, "TOKENWARDEN_CATALOG="+e.catalogVia(tap.URL, steady.URL))
	w.start()
	w2.start()
	t.Cleanup(w.kill)
	t.Cleanup(w2.kill)

	links, restarts := 5, 5
	if os.Getenv("TOKENWARDEN_FAULTS") == "full" {
		links, restarts = 20, 50
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(restarts)*40*time.Second+5*time.Minute)
	defer cancel()
	r := e.newRotatingLinks(ctx, links)

	hits := 0
	var longest time.Duration
	for i := 0; i < restarts; i++ {
		// Wait for a refresh of this worker's whose reply is held back:
		// the provider has rotated, the new refresh token is not in
		// Vault yet.
		select {
		case <-held:
		default:
		}
		select {
		case <-held:
			hits++
		case <-time.After(30 * time.Second):
			t.Logf("restart %d: no refresh of the restarted worker in flight", i+1)
		}
		took, err := w.terminate(3 * time.Minute)
		if err != nil {
			t.Errorf("restart %d: worker did not stop cleanly on SIGTERM after %s: %v", i+1, took, err)
		}
		longest = max(longest, took)
		w.start()
	}
	during := r.refreshed(ctx)

	lostIDs, rejected, requests := r.settle(ctx)
	lost := len(lostIDs)
	notes := fmt.Sprintf("%d SIGTERM restarts (%d with a rotated refresh token on its way back; longest stop %s) during %d refresh cycles across %d links, a second worker throughout: %d lost; %d refresh requests at the peer, %d rejected",
		restarts, hits, longest.Round(time.Millisecond), during, len(r.ids), lost, requests, rejected)
	t.Log(notes)
	recordFaultRow(t, "1 worker SIGTERMed mid-refresh (rolling deploy)", len(r.ids), lost, rejected, notes)
	if lost > 0 {
		t.Errorf("%d links lost their grant across SIGTERM restarts, want 0", lost)
	}
	if rejected > 0 {
		t.Errorf("the peer rejected %d refresh requests: a spent refresh token was replayed (or a rotated one dropped)", rejected)
	}
	if hits < restarts/2 {
		t.Errorf("only %d of %d restarts landed while a refresh reply was in flight; the test proves little", hits, restarts)
	}
	w.kill()
	w2.kill()
	e.ScanForSecrets(ctx)
}
