package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// enrollOutage is how long the peer's token endpoint answers 503.
const enrollOutage = 30 * time.Second

// TestEnrollmentOutlastsProviderOutage: the provider answers 5xx for
// enrollOutage while a link enrolls, and while a link that needs
// re-authorization enrolls again. Both links end active: transient
// failures are retried for the authorization window. Before, an
// enrollment gave up after four attempts (about 7 s): the new link
// failed, and the re-enrolled one stayed in reauth_required.
//
// The peer's counters show that the exchange met the outage: at least
// one 503 was answered to a request of the link's grant before the
// outage ended. Only the Enroll activity sends those grants here (the
// re-enrolled link is in reauth_required, so it does not refresh).
func TestEnrollmentOutlastsProviderOutage(t *testing.T) {
	t.Parallel()
	t.Run("enrollment", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
		e.StartWorker()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		met := outage(ctx, t, e, providers.GrantAuthorizationCode)
		id := e.createAuthCodeLink(ctx)
		e.WaitFor(ctx, id, "active after the outage", active)
		met()
	})
	t.Run("re-enrollment", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second})
		e.StartWorker()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		id := e.createLink(ctx, providers.GrantClientCredentials, providers.Grant{Scopes: []string{"api:read"}})
		e.WaitFor(ctx, id, "enrolled", active)
		// The client is refused once: the link needs re-authorization.
		if err := e.peer.InjectFault(ctx, oidcpeer.Fault{Status: 401, Error: "invalid_client", GrantType: providers.GrantClientCredentials}); err != nil {
			t.Fatal(err)
		}
		e.WaitFor(ctx, id, "reauth_required", e2e.Status(workflows.StatusReauthRequired))
		met := outage(ctx, t, e, providers.GrantClientCredentials)
		if err := e.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.SignalReauthorize,
			workflows.ReauthorizeRequest{GrantType: providers.GrantClientCredentials}); err != nil {
			t.Fatal(err)
		}
		e.WaitFor(ctx, id, "active after the outage", active)
		met()
	})
}

// outage makes the peer answer 503 to requests of grant for enrollOutage.
// The function it returns waits for the outage to end and fails the test
// unless the peer answered at least one of those 503s: otherwise the test
// would pass as well if the exchange only began after the outage.
func outage(ctx context.Context, t *testing.T, e *engine, grant string) (met func()) {
	t.Helper()
	before, err := e.peer.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.peer.InjectFault(ctx, oidcpeer.Fault{Count: 1 << 20, Status: 503, GrantType: grant}); err != nil {
		t.Fatal(err)
	}
	type count struct {
		n   int
		err error
	}
	ended := make(chan count, 1)
	timer := time.AfterFunc(enrollOutage, func() {
		// Counted before the faults are cleared: only the outage's 503s.
		s, err := e.peer.Stats(context.Background())
		_ = e.peer.ClearFaults(context.Background())
		ended <- count{s.FaultsInjected - before.FaultsInjected, err}
	})
	t.Cleanup(func() { timer.Stop() })
	return func() {
		t.Helper()
		select {
		case c := <-ended:
			switch {
			case c.err != nil:
				t.Errorf("counting the outage's 503s: %v", c.err)
			case c.n < 1:
				t.Errorf("no %s request met the outage (503s answered: %d): the exchange began after it", grant, c.n)
			default:
				t.Logf("%d %s requests answered 503 during the outage", c.n, grant)
			}
		case <-ctx.Done():
			t.Fatal("the outage did not end")
		}
	}
}
