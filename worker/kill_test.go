package worker_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// buildBinary builds cmd/tokenwarden once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokenwarden")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tokenwarden")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokenwarden: %v\n%s", err, out)
	}
	return bin
}

// workerProcess runs `tokenwarden worker` against the engine's namespace,
// Vault prefix and schema, as a separate process that can be SIGKILLed.
type workerProcess struct {
	t   *testing.T
	bin string
	env []string
	e   *engine
	cmd *exec.Cmd
}

func (e *engine) workerProcess(bin string) *workerProcess {
	return &workerProcess{t: e.t, bin: bin, env: e.Env(), e: e}
}

func (w *workerProcess) start() {
	w.t.Helper()
	w.cmd = exec.Command(w.bin, "worker")
	w.cmd.Env = w.env
	w.cmd.Stdout = w.e.Logs
	w.cmd.Stderr = w.e.Logs
	if err := w.cmd.Start(); err != nil {
		w.t.Fatalf("start worker: %v", err)
	}
}

func (w *workerProcess) kill() {
	if w.cmd != nil && w.cmd.Process != nil {
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		_ = w.cmd.Wait()
		w.cmd = nil
	}
}

// TestWorkerKilledMidRefresh SIGKILLs the worker process at random moments
// while five links refresh every few seconds against a server that rotates
// refresh tokens and revokes the whole grant when a spent one is replayed.
// Every link must come out active and refreshable: no rotated refresh token
// lost, none replayed.
func TestWorkerKilledMidRefresh(t *testing.T) {
	t.Parallel()
	e := newEngineWithTokenProxy(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	w := e.workerProcess(buildBinary(t))
	w.start()
	t.Cleanup(w.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Short version in make test; make faults (TOKENWARDEN_FAULTS=full)
	// runs the 50 links through at least 200 refresh cycles.
	links, storm, cycles := 5, 40*time.Second, 0
	if os.Getenv("TOKENWARDEN_FAULTS") == "full" {
		links, storm, cycles = 50, 90*time.Second, 200
	}
	var ids []string
	for i := 0; i < links; i++ {
		ids = append(ids, e.createAuthCodeLink(ctx))
	}
	for _, id := range ids {
		e.WaitFor(ctx, id, "enrolled", active)
	}
	before := map[string]int{}
	for _, id := range ids {
		st, _ := e.State(ctx, id)
		before[id] = st.Refreshes
	}

	kills := 0
	var killedAt []time.Time
	refreshed := func() int {
		n := 0
		for _, id := range ids {
			if st, err := e.State(ctx, id); err == nil {
				n += st.Refreshes - before[id]
			}
		}
		return n
	}
	end := time.Now().Add(storm)
	for time.Now().Before(end) || (refreshed() < cycles && time.Since(end) < 3*time.Minute) {
		time.Sleep(time.Duration(1000+rand.IntN(3000)) * time.Millisecond)
		w.kill()
		kills++
		killedAt = append(killedAt, time.Now())
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		w.start()
	}
	during := refreshed()

	// The one window no engine can close: a worker killed between the
	// provider rotating the refresh token and the new one reaching Vault
	// (the request in flight, or its reply not yet stored). Every kill
	// that had a token request in flight may cost one link; a link lost
	// otherwise is a bug.
	window := 0
	time.Sleep(300 * time.Millisecond) // let the last kill's in-flight replies finish, to count them
	for _, at := range killedAt {
		window += e.tokenCalls.inFlight(at, 100*time.Millisecond)
	}

	// After the storm every link refreshes again on its own, and on
	// demand, with a token the server accepts...
	lost := 0
	for _, id := range ids {
		st := e.WaitFor(ctx, id, "settled after the kills", func(st workflows.State) bool {
			return st.Status == workflows.StatusReauthRequired ||
				st.Status == workflows.StatusActive && st.Refreshes >= before[id]+3
		})
		if st.Status == workflows.StatusReauthRequired {
			lost++
			t.Logf("link %s lost its grant: %s", id, st.LastError)
			continue
		}
		h, err := e.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: workflows.WorkflowID(tenant, id), UpdateName: workflows.UpdateRefresh,
			Args: []any{workflows.RefreshRequest{}}, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err != nil {
			t.Errorf("link %s is active but cannot refresh after the kills: %v", id, err)
			continue
		}
		tok, _ := e.Token(ctx, id)
		if ok, _, err := e.peer.Introspect(ctx, tok.AccessToken); err != nil || !ok {
			t.Errorf("link %s: token not active at the peer after the kills", id)
		}
	}
	stats, err := e.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rejected := stats.TokenErrorsByGrantType["refresh_token"]
	t.Logf("%d SIGKILLs during %d refresh cycles across %d links: %d lost (%d kills landed with a token request in flight); %d refresh requests at the peer, %d rejected",
		kills, during, len(ids), lost, window, stats.TokenByGrantType["refresh_token"], rejected)
	if during < cycles {
		t.Errorf("only %d refresh cycles during the kills, want %d", during, cycles)
	}
	if lost > window {
		t.Errorf("%d links lost, but only %d kills landed while a refresh was in flight: a refresh token was lost or replayed outside the inherent window", lost, window)
	}
	// A lost link's grant is rejected once; more rejections mean a spent
	// refresh token was replayed somewhere else.
	if rejected > lost {
		t.Errorf("the peer rejected %d refresh requests for %d lost links: a spent refresh token was replayed", rejected, lost)
	}
	w.kill()
	e.ScanForSecrets(ctx)
}
