package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// hookSuite is a link suite whose tenant has a webhook (subscribed decides
// per event type), with the delivery workflow registered and its activity
// recording what it was asked to deliver.
type hookSuite struct {
	*suite
	mu         sync.Mutex
	subscribed func(typ string) bool
	checks     []string
	children   []string // workflow IDs of started delivery workflows
	delivered  []WebhookEvent
}

func newHookSuite(t *testing.T, lifetime time.Duration, subscribed func(string) bool) *hookSuite {
	s := newSuite(t, lifetime)
	h := &hookSuite{suite: s, subscribed: subscribed}
	// Asked by the WebhookSubscribed activity and by a lean Enroll.
	s.f.webhookAnswer = func(c WebhookCheck) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.checks = append(h.checks, c.Type)
		return h.subscribed(c.Type), nil
	}
	s.env.RegisterWorkflowWithOptions(WebhookDelivery, workflow.RegisterOptions{Name: WorkflowWebhook})
	s.env.RegisterActivityWithOptions(func(_ context.Context, ev WebhookEvent) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.delivered = append(h.delivered, ev)
		return nil
	}, activity.RegisterOptions{Name: ActivityDeliverWebhook})
	s.env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.children = append(h.children, info.WorkflowExecution.ID)
	})
	return h
}

func TestWebhookChildWorkflowsForActionableTransitions(t *testing.T) {
	h := newHookSuite(t, 10*time.Minute, func(string) bool { return true })
	transient := temporal.NewApplicationError("refresh: transient (HTTP 503)", "Transient")
	// Four attempts per activity execution: two executions fail (two
	// refresh_failed transitions, one webhook), then the link recovers,
	// then its grant dies, and finally it is revoked.
	for range 8 {
		h.f.refreshErrs = append(h.f.refreshErrs, transient)
	}
	h.f.refreshErrs = append(h.f.refreshErrs, nil, nil)
	h.revokeAt(2 * time.Hour)
	h.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, h.env.GetWorkflowError())

	var want []string
	ids := map[string]bool{}
	for _, r := range h.f.sortedRecords() {
		typ := WebhookEventType(r.Type)
		if typ == WebhookLinkRefreshFailed && r.State.Failures != 1 {
			continue
		}
		if typ != "" {
			want = append(want, typ)
			ids["webhook/"+WebhookEventID(r.EventID)] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, []string{WebhookLinkActive, WebhookLinkRefreshFailed, WebhookLinkRecovered, WebhookLinkRevoked}, want)
	require.Equal(t, want, h.checks, "one subscription check per actionable transition, none for refreshes")
	require.Len(t, h.children, len(want))
	for _, id := range h.children {
		require.True(t, ids[id], "child %s is named after its transition", id)
	}
	var got []string
	for _, ev := range h.delivered {
		got = append(got, ev.Type)
		require.Equal(t, "acme", ev.Data.TenantID)
		require.Equal(t, "lnk_1", ev.Data.LinkID)
		require.Equal(t, "peer", ev.Data.Provider)
		if ev.Type == WebhookLinkRefreshFailed {
			require.Equal(t, StatusDegraded, ev.Data.Status)
			require.Contains(t, ev.Data.LastError, "503")
		}
	}
	// Deliveries run in abandoned children: the last may not have run
	// when the test environment stops with the parent.
	require.GreaterOrEqual(t, len(got), len(want)-1)
	require.Equal(t, want[:len(got)], got)
}

func TestWebhookOnlyWhenSubscribed(t *testing.T) {
	h := newHookSuite(t, time.Hour, func(typ string) bool { return typ == WebhookLinkRevoked })
	h.f.refreshErrs = []error{temporal.NewNonRetryableApplicationError("refresh: invalid_grant", ErrTypeInvalidGrant, nil)}
	h.revokeAt(2 * time.Hour)
	h.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, h.env.GetWorkflowError())
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, []string{WebhookLinkActive, WebhookLinkReauthRequired, WebhookLinkRevoked}, h.checks)
	require.Len(t, h.children, 1, "only the subscribed event gets a delivery workflow")
}

func TestWebhookDeliveryRetriesAndStopsOnGone(t *testing.T) {
	for _, tc := range []struct {
		name     string
		errs     []error
		attempts int
	}{
		{"retries until delivered", []error{temporal.NewApplicationError("HTTP 500", "WebhookStatus"), temporal.NewApplicationError("HTTP 500", "WebhookStatus")}, 3},
		{"stops on 410", []error{temporal.NewNonRetryableApplicationError("HTTP 410", ErrTypeWebhookGone, nil)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t, time.Hour)
			var calls []time.Time
			errs := tc.errs
			s.env.RegisterWorkflowWithOptions(WebhookDelivery, workflow.RegisterOptions{Name: WorkflowWebhook})
			s.env.RegisterActivityWithOptions(func(context.Context, WebhookEvent) error {
				calls = append(calls, s.env.Now())
				if len(errs) > 0 {
					err := errs[0]
					errs = errs[1:]
					return err
				}
				return nil
			}, activity.RegisterOptions{Name: ActivityDeliverWebhook})
			s.env.ExecuteWorkflow(WebhookDelivery, WebhookEvent{ID: "evt_1", Type: WebhookLinkRevoked})
			require.True(t, s.env.IsWorkflowCompleted())
			require.NoError(t, s.env.GetWorkflowError())
			require.Len(t, calls, tc.attempts)
			for i := 2; i < len(calls); i++ {
				require.Greater(t, calls[i].Sub(calls[i-1]), calls[i-1].Sub(calls[i-2]), "exponential backoff")
			}
		})
	}
}
