package worker_test

// Durability tests of issue 9: points 4 (a token the provider issued
// reaches Vault), 5 (enrollment is idempotent), 10 (conservative expiry)
// and 13 (two attempts never hold the same refresh token). Each runs the
// real stack and the oidc-provider peer, which rotates refresh tokens and
// revokes the whole grant when a spent one comes back: a replay shows as
// a rejected refresh request and a link lost.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestTokenWriteSurvivesVaultOutage takes Vault away right after the peer
// answered a refresh (rotating the refresh token) and before the worker
// stores the answer: first unreachable (connections hang, as when its
// host goes down), then refusing connections, for 20 s in all. The write
// must be retried until Vault is back: no token lost, none replayed.
func TestTokenWriteSurvivesVaultOutage(t *testing.T) {
	t.Parallel()
	e, tap := newEngineWithTap(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	u, err := url.Parse(e.Info.VaultAddress)
	if err != nil {
		t.Fatal(err)
	}
	vcut := newTCPCut(t, u.Host)
	e.startWorkerWith(e.Info.TemporalAddress, e.vaultVia("http://"+vcut.addr()), sdkworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	st := e.WaitFor(ctx, id, "enrolled", active)
	cut := make(chan struct{})
	var once sync.Once
	tap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if grantOf(body) == "refresh_token" && status == http.StatusOK {
			once.Do(func() { vcut.set(cutBlackhole); close(cut) })
		}
		return true
	})
	waitTimeout(t, cut, 30*time.Second, "a refresh")
	time.Sleep(13 * time.Second)
	vcut.set(cutRefuse)
	time.Sleep(7 * time.Second)
	vcut.set(cutPass)
	t.Log("Vault back after 20 s")

	e.refreshesAfter(ctx, id, st.Refreshes, 3)
	e.noReplay(ctx)
	if !strings.Contains(e.Logs.String(), "retrying the token write") {
		t.Error("the outage never hit a token write")
	}
	e.ScanForSecrets(ctx)
}

// TestVaultTokenRevokedMidRefresh revokes the Vault token of a worker
// process (AppRole login) between the peer's answer to a refresh and the
// write of the new token, and once more while it idles. The worker must
// log in again and carry on: no token lost, none replayed.
func TestVaultTokenRevokedMidRefresh(t *testing.T) {
	t.Parallel()
	e, tap := newEngineWithTap(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	secretID, revoke := e.approleFor(ctx)
	w := e.workerProcess(buildBinary(t))
	w.env = append(w.env, "TOKENWARDEN_VAULT_SECRET_ID="+secretID)
	w.start()
	t.Cleanup(w.kill)

	id := e.createAuthCodeLink(ctx)
	st := e.WaitFor(ctx, id, "enrolled", active)
	revoked := make(chan int, 1)
	var once sync.Once
	tap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if grantOf(body) == "refresh_token" && status == http.StatusOK {
			once.Do(func() { revoked <- revoke() })
		}
		return true
	})
	select {
	case n := <-revoked:
		if n == 0 {
			t.Fatal("found no Vault token of the worker to revoke")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no refresh within 30 s")
	}
	st = e.refreshesAfter(ctx, id, st.Refreshes, 3)

	if revoke() == 0 {
		t.Fatal("found no Vault token of the worker to revoke the second time")
	}
	e.refreshesAfter(ctx, id, st.Refreshes, 3)
	e.noReplay(ctx)
	if n := strings.Count(e.Logs.String(), "logged in again"); n < 2 {
		t.Errorf("the worker logged in again %d times, want 2", n)
	}
	w.kill()
	e.ScanForSecrets(ctx)
}

// failAfterSuccess fails the first attempt of an activity that succeeded
// (for PollDevice: that returned a token), as if the worker had lost the
// attempt right after its Vault write.
type failAfterSuccess struct {
	interceptor.WorkerInterceptorBase
	activity string
	failed   atomic.Bool
}

func (f *failAfterSuccess) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &failAfterSuccessActivity{f: f}
	i.Next = next
	return i
}

type failAfterSuccessActivity struct {
	interceptor.ActivityInboundInterceptorBase
	f *failAfterSuccess
}

func (i *failAfterSuccessActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := i.Next.ExecuteActivity(ctx, in)
	if err != nil || activity.GetInfo(ctx).ActivityType.Name != i.f.activity {
		return res, err
	}
	if poll, ok := res.(workflows.DevicePoll); ok && poll.Token == nil {
		return res, err
	}
	if i.f.failed.CompareAndSwap(false, true) {
		return nil, errors.New("injected: the attempt was lost after its Vault write")
	}
	return res, err
}

// TestEnrollRetryAdoptsTheStoredToken fails the Enroll activity right
// after it exchanged the authorization code and stored the token. The
// retry must adopt that token, not send the spent code again: the link
// ends active, with one code exchange at the peer.
func TestEnrollRetryAdoptsTheStoredToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	fail := &failAfterSuccess{activity: workflows.ActivityEnroll}
	e.startWorkerWith(e.Info.TemporalAddress, e.Secrets, sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{fail}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	st := e.WaitFor(ctx, id, "enrolled", settled)
	if !fail.failed.Load() {
		t.Fatal("the fault was not injected")
	}
	if st.Status != workflows.StatusActive {
		t.Fatalf("link is %s after a retried enrollment, want active; last_error %q", st.Status, st.LastError)
	}
	e.checkCodeExchanges(ctx, "authorization_code", 1)
	e.refreshesAfter(ctx, id, st.Refreshes, 2)
	e.noReplay(ctx)
	e.ScanForSecrets(ctx)
}

// TestEnrollRetryAfterWorkerKilled SIGKILLs a worker process the moment
// Vault acknowledged its write of a link's first token (before the spent
// code is dropped and before Temporal hears of it). Another worker takes
// the retry after the heartbeat timeout and must adopt the stored token.
func TestEnrollRetryAfterWorkerKilled(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	vtap := newHTTPTap(t, e.Info.VaultAddress)
	w := e.workerProcess(buildBinary(t))
	w.env = append(w.env, "VAULT_ADDR="+vtap.URL)
	killed := make(chan struct{})
	var once sync.Once
	vtap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if r.Method == http.MethodGet || !isTokenPath(r) || status != http.StatusOK {
			return true
		}
		drop := false
		once.Do(func() { w.kill(); close(killed); drop = true })
		return !drop
	})
	w.start()
	t.Cleanup(w.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	waitTimeout(t, killed, 60*time.Second, "the first token write")
	e.StartWorker()
	st := e.WaitFor(ctx, id, "enrolled", settled)
	if st.Status != workflows.StatusActive {
		t.Fatalf("link is %s after the worker was killed mid-enrollment, want active; last_error %q", st.Status, st.LastError)
	}
	e.checkCodeExchanges(ctx, "authorization_code", 1)
	e.refreshesAfter(ctx, id, st.Refreshes, 2)
	e.noReplay(ctx)
	e.ScanForSecrets(ctx)
}

// TestDevicePollRetryAdoptsTheStoredToken is the device flow twin of
// TestEnrollRetryAdoptsTheStoredToken: the poll that obtained the token
// is lost after its Vault write; the retry must not redeem the device
// code again.
func TestDevicePollRetryAdoptsTheStoredToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second})
	fail := &failAfterSuccess{activity: workflows.ActivityPollDevice}
	e.startWorkerWith(e.Info.TemporalAddress, e.Secrets, sdkworker.Options{Interceptors: []interceptor.WorkerInterceptor{fail}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p, _, _ := e.Registry.Get("peer")
	da, err := p.(providers.DeviceAuthorizer).DeviceAuth(ctx, []string{"openid", "offline_access"})
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	e.Remember(da.DeviceCode)
	id := e.createLink(ctx, providers.GrantDeviceCode, providers.Grant{DeviceCode: da.DeviceCode,
		Scopes: []string{"openid", "offline_access"}, DeviceInterval: da.Interval})
	e.WaitFor(ctx, id, "pending", func(st workflows.State) bool { return st.Status == workflows.StatusPendingAuthorization })
	if err := e.peer.ApproveDevice(ctx, da.UserCode, "bob"); err != nil {
		t.Fatalf("approve device: %v", err)
	}
	st := e.WaitFor(ctx, id, "enrolled", settled)
	if !fail.failed.Load() {
		t.Fatal("the fault was not injected")
	}
	if st.Status != workflows.StatusActive {
		t.Fatalf("link is %s after a retried device poll, want active; last_error %q", st.Status, st.LastError)
	}
	e.checkCodeExchanges(ctx, "urn:ietf:params:oauth:grant-type:device_code", 1)
	e.ScanForSecrets(ctx)
}

// settled is a WaitFor condition: enrollment is over, one way or the other.
func settled(st workflows.State) bool {
	switch st.Status {
	case workflows.StatusActive, workflows.StatusFailed, workflows.StatusReauthRequired, workflows.StatusRevoked:
		return true
	}
	return false
}

// checkCodeExchanges fails the test unless the peer answered exactly want
// token requests of grantType successfully.
func (e *engine) checkCodeExchanges(ctx context.Context, grantType string, want int) {
	e.t.Helper()
	stats, err := e.peer.Stats(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if ok := stats.TokenByGrantType[grantType] - stats.TokenErrorsByGrantType[grantType]; ok != want {
		e.t.Errorf("%d successful %s exchanges at the peer (%d requests), want %d",
			ok, grantType, stats.TokenByGrantType[grantType], want)
	}
	if n := stats.TokenErrorsByGrantType[grantType]; n > 0 && grantType == "authorization_code" {
		e.t.Errorf("the peer rejected %d authorization code exchanges: a spent code was sent again", n)
	}
}

// TestServedTokensAreAliveAtTheServer reads a link's token through the
// gateway about 80 times while the peer issues 4-second tokens (whole
// seconds, counted from its own clock), and asks the peer about each
// token right away: none may be expired there. The schedule refreshes
// late (5 % of the lifetime before expiry, as a loaded engine may), so
// that many reads find a token near its end: there, an expiry counted
// from the reply rather than the request, and blind to the provider's
// rounding, lets the gateway serve a dead token.
func TestServedTokensAreAliveAtTheServer(t *testing.T) {
	t.Parallel()
	e := newEngineWithSchedule(t, oidcpeer.Options{AccessTokenTTL: 4 * time.Second, RequireOfflineAccess: true},
		"{min_margin: 100ms, fraction: 0.05, jitter: 0.01, default_lifetime: 4s}")
	e.StartWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := e.createAuthCodeLink(ctx)
	e.WaitFor(ctx, id, "enrolled", active)

	const reads = 80
	served, dead, failed := 0, 0, 0
	for i := 0; i < reads; i++ {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		tok, err := e.Client.Token(ctx, id, 0)
		if err != nil {
			failed++
			t.Logf("read %d: %v", i, err)
			continue
		}
		e.Remember(tok.AccessToken)
		served++
		ok, _, err := e.peer.Introspect(ctx, tok.AccessToken)
		if err != nil {
			t.Fatalf("introspect: %v", err)
		}
		if !ok {
			dead++
			t.Errorf("read %d: the gateway served a token the peer no longer accepts (%s left by its expires_at)",
				i, time.Until(tok.Expiry).Round(time.Millisecond))
		}
	}
	t.Logf("%d reads: %d tokens served, %d expired at the peer, %d errors", reads, served, dead, failed)
	if failed > reads/10 {
		t.Errorf("%d of %d reads failed", failed, reads)
	}
	e.ScanForSecrets(ctx)
}

// TestPartitionedRefresherGivesUp cuts a worker process (A) off from
// Temporal (a partition: its packets go unanswered) in the middle of a
// refresh attempt, after it read the refresh token and before it sent it,
// while a second worker (B) runs. A is also paused there (SIGSTOP) for
// 14 s, as a long GC or VM pause would: its SDK's own timers stop with
// it, so only the engine's rule can stop it. Temporal gives the refresh
// to B after the heartbeat timeout (10 s); A, resumed with no heartbeat
// confirmed for more than half of it, must not send the refresh token it
// read: the peer sees no refresh token twice.
func TestPartitionedRefresherGivesUp(t *testing.T) {
	t.Parallel()
	e, tap := newEngineWithTap(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
	var mu sync.Mutex
	var sends []string
	var cutAt time.Time
	tap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if grantOf(body) == "refresh_token" {
			mu.Lock()
			if !cutAt.IsZero() {
				sends = append(sends, fmt.Sprintf("+%s %s -> %d", time.Since(cutAt).Round(100*time.Millisecond), refreshTokenHash(body), status))
			}
			mu.Unlock()
		}
		return true
	})
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("refresh requests after the cut (time, refresh token hash, status): %v", sends)
	}()
	tcut := newTCPCut(t, e.Info.TemporalAddress)
	vtap := newHTTPTap(t, e.Info.VaultAddress)
	a := e.workerProcess(buildBinary(t))
	a.env = append(a.env, "TOKENWARDEN_TEMPORAL_ADDRESS="+tcut.addr(), "VAULT_ADDR="+vtap.URL)
	a.start()
	t.Cleanup(a.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	id := e.createAuthCodeLink(ctx)
	st := e.WaitFor(ctx, id, "enrolled", active)
	st = e.refreshesAfter(ctx, id, st.Refreshes, 1)

	cut := make(chan struct{})
	var once sync.Once
	vtap.setAfter(func(r *http.Request, body []byte, status int) bool {
		if r.Method != http.MethodGet || !isTokenPath(r) {
			return true
		}
		once.Do(func() {
			tcut.set(cutBlackhole)
			_ = a.cmd.Process.Signal(syscall.SIGSTOP)
			mu.Lock()
			cutAt = time.Now()
			mu.Unlock()
			close(cut)
		})
		return true
	})
	waitTimeout(t, cut, 30*time.Second, "worker A's next refresh")
	t.Log("worker A cut off from Temporal and paused mid-refresh; starting worker B")
	e.StartWorker()
	time.Sleep(14 * time.Second)
	_ = a.cmd.Process.Signal(syscall.SIGCONT)
	t.Log("worker A resumed, still cut off")
	time.Sleep(15 * time.Second)
	tcut.set(cutPass)
	tcut.resetDead()
	t.Log("worker A reconnected")

	e.refreshesAfter(ctx, id, st.Refreshes, 3)
	e.noReplay(ctx)
	if !strings.Contains(e.Logs.String(), "heartbeat lease lost") {
		t.Error("worker A did not report giving up its refresh attempt")
	}
	a.kill()
	e.ScanForSecrets(ctx)
}
