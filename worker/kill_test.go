package worker_test

import (
	"context"
	"math/rand/v2"
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
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	w := e.workerProcess(buildBinary(t))
	w.start()
	t.Cleanup(w.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var ids []string
	for i := 0; i < 5; i++ {
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
	end := time.Now().Add(40 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(1000+rand.IntN(3000)) * time.Millisecond)
		w.kill()
		kills++
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		w.start()
	}

	// After the storm every link refreshes again on its own...
	for _, id := range ids {
		e.WaitFor(ctx, id, "refreshing after the kills", func(st workflows.State) bool {
			return st.Status == workflows.StatusActive && st.Refreshes >= before[id]+3
		})
	}
	lost := 0
	for _, id := range ids {
		// ...and on demand, with a token the server accepts.
		h, err := e.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: workflows.WorkflowID(tenant, id), UpdateName: workflows.UpdateRefresh,
			Args: []any{workflows.RefreshRequest{}}, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if err != nil {
			lost++
			t.Errorf("link %s cannot refresh after the kills: %v", id, err)
			continue
		}
		tok, _ := e.Token(ctx, id)
		if ok, _, err := e.peer.Introspect(ctx, tok.AccessToken); err != nil || !ok {
			lost++
			t.Errorf("link %s: token not active at the peer after the kills", id)
		}
	}
	stats, err := e.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d SIGKILLs over 40 s across %d links: %d lost; %d refresh requests at the peer, %d rejected",
		kills, len(ids), lost, stats.TokenByGrantType["refresh_token"], stats.TokenErrorsByGrantType["refresh_token"])
	if n := stats.TokenErrorsByGrantType["refresh_token"]; n > 0 {
		t.Errorf("the peer rejected %d refresh requests: a spent refresh token was replayed", n)
	}
	w.kill()
	e.ScanForSecrets(ctx)
}
