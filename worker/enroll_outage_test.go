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
func TestEnrollmentOutlastsProviderOutage(t *testing.T) {
	t.Parallel()
	t.Run("enrollment", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, oidcpeer.Options{AccessTokenTTL: 5 * time.Second, RequireOfflineAccess: true})
		e.StartWorker()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		outage(ctx, t, e, providers.GrantAuthorizationCode)
		id := e.createAuthCodeLink(ctx)
		e.WaitFor(ctx, id, "active after the outage", active)
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
		outage(ctx, t, e, providers.GrantClientCredentials)
		if err := e.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(tenant, id), "", workflows.SignalReauthorize,
			workflows.ReauthorizeRequest{GrantType: providers.GrantClientCredentials}); err != nil {
			t.Fatal(err)
		}
		e.WaitFor(ctx, id, "active after the outage", active)
	})
}

// outage makes the peer answer 503 to grant requests for enrollOutage.
func outage(ctx context.Context, t *testing.T, e *engine, grant string) {
	t.Helper()
	if err := e.peer.InjectFault(ctx, oidcpeer.Fault{Count: 1 << 20, Status: 503, GrantType: grant}); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(enrollOutage, func() { _ = e.peer.ClearFaults(context.Background()) })
	t.Cleanup(func() { timer.Stop() })
}
