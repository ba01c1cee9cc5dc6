package activities_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/workflows"
)

const tenant = store.DefaultTenantID

// receiver is a webhook endpoint answering with statuses in turn (200 once
// they run out) and keeping what it got.
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []delivery
	// onRequest runs before the answer.
	onRequest func(n int)
}

type delivery struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{header: req.Header.Clone(), body: body})
		n := len(r.got)
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		hook := r.onRequest
		r.mu.Unlock()
		if hook != nil {
			hook(n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

type hookEnv struct {
	pool *pgxpool.Pool
	st   *store.Store
	sec  *secrets.Store
	a    *activities.Activities
}

func newHookEnv(t *testing.T) *hookEnv {
	pool, _ := testenv.Postgres(t)
	require.NoError(t, store.Migrate(context.Background(), pool))
	vc, prefix := testenv.Vault(t)
	e := &hookEnv{pool: pool, st: store.New(pool), sec: secrets.New(vc, testenv.StackInfo(t).VaultMount, prefix)}
	e.a = &activities.Activities{Store: e.st, Secrets: e.sec, WebhooksToInternal: true}
	return e
}

func (e *hookEnv) configure(t *testing.T, url, secret string, events ...string) {
	ctx := context.Background()
	_, _, err := e.st.PutWebhook(ctx, store.Webhook{TenantID: tenant, URL: url, Events: events})
	require.NoError(t, err)
	require.NoError(t, e.sec.WriteWebhookSecret(ctx, tenant, secret))
}

// deliver runs the delivery workflow with the real activity on the test
// environment's skipping clock, so retries take no wall time.
func (e *hookEnv) deliver(t *testing.T, ev workflows.WebhookEvent) error {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.SetTestTimeout(time.Minute)
	env.RegisterWorkflowWithOptions(workflows.WebhookDelivery, workflow.RegisterOptions{Name: workflows.WorkflowWebhook})
	env.RegisterActivityWithOptions(e.a.DeliverWebhook, activity.RegisterOptions{Name: workflows.ActivityDeliverWebhook})
	env.ExecuteWorkflow(workflows.WorkflowWebhook, ev)
	require.True(t, env.IsWorkflowCompleted())
	return env.GetWorkflowError()
}

func event() workflows.WebhookEvent {
	return workflows.WebhookEvent{
		ID: workflows.WebhookEventID("link/default/lnk_1/7"), Type: workflows.WebhookLinkRevoked,
		CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Data: workflows.WebhookData{LinkID: "lnk_1", TenantID: tenant, Provider: "peer",
			Status: workflows.StatusRevoked, LastError: ""},
	}
}

func TestDeliverWebhookSignsAndRetriesUntil2xx(t *testing.T) {
	e := newHookEnv(t)
	r := newReceiver(t, 500, 503, 200)
	const secret = "whsec_test-secret-one"
	e.configure(t, r.srv.URL+"/hooks?source=tw", secret)

	require.NoError(t, e.deliver(t, event()))
	got := r.deliveries()
	require.Len(t, got, 3, "two failures, then delivered")
	for _, d := range got {
		require.NoError(t, tokenwarden.VerifyWebhook(secret, d.header.Get("Tokenwarden-Signature"), d.body, time.Minute))
		require.Error(t, tokenwarden.VerifyWebhook("whsec_another", d.header.Get("Tokenwarden-Signature"), d.body, time.Minute))
		require.Equal(t, event().ID, d.header.Get("Tokenwarden-Event-Id"), "the same event ID on every attempt")
		require.Equal(t, "application/json", d.header.Get("Content-Type"))
		var body map[string]any
		require.NoError(t, json.Unmarshal(d.body, &body))
		require.Equal(t, event().ID, body["id"])
		require.Equal(t, "link.revoked", body["type"])
		require.Equal(t, "2030-01-02T03:04:05Z", body["created_at"])
		require.Equal(t, map[string]any{"link_id": "lnk_1", "tenant_id": tenant, "provider": "peer",
			"status": "revoked", "last_error": ""}, body["data"])
	}
}

func TestDeliverWebhookStopsOn410(t *testing.T) {
	e := newHookEnv(t)
	r := newReceiver(t, http.StatusGone, 500, 500)
	e.configure(t, r.srv.URL, "whsec_test-secret-two")
	require.NoError(t, e.deliver(t, event()), "410 ends the delivery without failing it")
	require.Len(t, r.deliveries(), 1, "no retry after 410 Gone")
}

func TestDeliverWebhookRetriesAreSignedWithTheCurrentSecret(t *testing.T) {
	e := newHookEnv(t)
	r := newReceiver(t, 500)
	e.configure(t, r.srv.URL, "whsec_before-rotation")
	r.onRequest = func(n int) {
		if n == 1 {
			require.NoError(t, e.sec.WriteWebhookSecret(context.Background(), tenant, "whsec_after-rotation"))
		}
	}
	require.NoError(t, e.deliver(t, event()))
	got := r.deliveries()
	require.Len(t, got, 2)
	require.NoError(t, tokenwarden.VerifyWebhook("whsec_before-rotation", got[0].header.Get("Tokenwarden-Signature"), got[0].body, time.Minute))
	require.NoError(t, tokenwarden.VerifyWebhook("whsec_after-rotation", got[1].header.Get("Tokenwarden-Signature"), got[1].body, time.Minute))
}

func TestDeliverWebhookWithoutConfigOrSubscription(t *testing.T) {
	e := newHookEnv(t)
	r := newReceiver(t)
	ctx := context.Background()

	ok, err := e.a.WebhookSubscribed(ctx, workflows.WebhookCheck{TenantID: tenant, Type: workflows.WebhookLinkRevoked})
	require.NoError(t, err)
	require.False(t, ok, "no webhook, no subscription")
	require.NoError(t, e.deliver(t, event()), "no webhook: nothing to do")

	e.configure(t, r.srv.URL, "whsec_test-secret-three", workflows.WebhookLinkActive)
	ok, err = e.a.WebhookSubscribed(ctx, workflows.WebhookCheck{TenantID: tenant, Type: workflows.WebhookLinkRevoked})
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = e.a.WebhookSubscribed(ctx, workflows.WebhookCheck{TenantID: tenant, Type: workflows.WebhookLinkActive})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, e.deliver(t, event()), "an unsubscribed type is dropped")
	require.Empty(t, r.deliveries())
}

// TestDeliverWebhookRefusesInternalAddresses: in a real deployment a
// tenant's webhook cannot reach loopback or private addresses (here, the
// test receiver on 127.0.0.1), not even once, and the refusal is final.
func TestDeliverWebhookRefusesInternalAddresses(t *testing.T) {
	e := newHookEnv(t)
	e.a.WebhooksToInternal = false
	r := newReceiver(t, 200)
	e.configure(t, r.srv.URL+"/hooks", "whsec_test-secret-two")
	err := e.deliver(t, event())
	require.Error(t, err)
	require.Contains(t, err.Error(), "internal")
	require.Empty(t, r.deliveries(), "nothing reached the internal address")
}

// TestDeliverWebhookRecordsHowDeliveriesEnd: after each attempt the
// tenant's webhook row says how it ended, in plain words, so that GET
// /v1/webhook can tell a tenant why nothing arrives.
func TestDeliverWebhookRecordsHowDeliveriesEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		// receiver answers these statuses (then 200); tls serves it
		// with a certificate the client does not trust; internal
		// refuses internal addresses as production does.
		statuses []int
		tls      bool
		internal bool

		ok          bool
		retrying    bool
		problem     []string
		minFailures int
	}{
		{name: "delivered after a failure", statuses: []int{503}, ok: true},
		{name: "410 Gone", statuses: []int{http.StatusGone},
			problem: []string{"HTTP 410 Gone", "event is dropped"}, minFailures: 1},
		{name: "internal address", internal: true,
			problem: []string{"refused", "internal address", "public addresses only"}, minFailures: 1},
		// (The test environment tells the activity no retry policy, so
		// the last attempt cannot say it was the last: noRetryLeft's
		// own test covers that.)
		{name: "TLS failure on every attempt", tls: true, retrying: true,
			problem: []string{"TLS: the receiver's certificate was not accepted", "unknown authority", "retrying with backoff"}, minFailures: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHookEnv(t)
			e.a.WebhooksToInternal = !tc.internal
			r := newReceiver(t, tc.statuses...)
			if tc.tls {
				r.srv.Close()
				r.srv = httptest.NewTLSServer(r.srv.Config.Handler)
				t.Cleanup(r.srv.Close)
			}
			// The query stands for a receiver's own token: never shown.
			e.configure(t, r.srv.URL+"/hooks?token=receiver-token-42", "whsec_status-test")
			var midway *store.WebhookDelivery
			r.onRequest = func(n int) {
				if n == 2 {
					w, err := e.st.GetWebhook(context.Background(), tenant)
					require.NoError(t, err)
					midway = &w.Delivery
				}
			}
			err := e.deliver(t, event())
			if tc.tls {
				require.Error(t, err, "the retries ran out")
			}

			w, err := e.st.GetWebhook(context.Background(), tenant)
			require.NoError(t, err)
			d := w.Delivery
			require.NotNil(t, d.Last, "the attempt was recorded")
			require.Equal(t, event().ID, d.Last.EventID)
			require.Equal(t, "link.revoked", d.Last.EventType)
			require.WithinDuration(t, time.Now(), d.Last.At, time.Minute)
			require.Equal(t, tc.ok, d.Last.OK, d.Last.Problem)
			require.Equal(t, tc.retrying, d.Last.Retrying, d.Last.Problem)
			for _, want := range tc.problem {
				require.Contains(t, d.Last.Problem, want)
			}
			require.NotContains(t, d.Last.Problem, "receiver-token-42", "the URL's query is never shown")
			require.NotContains(t, d.Last.Problem, "/hooks", "nor its path")
			if tc.ok {
				require.Empty(t, d.Last.Problem)
				require.NotNil(t, d.LastSuccessAt)
				require.Zero(t, d.FailuresSinceSuccess)
				require.NotNil(t, midway, "a second attempt was made")
				require.Equal(t, 1, midway.FailuresSinceSuccess, "the failed first attempt was counted")
				require.True(t, midway.Last.Retrying)
				require.Contains(t, midway.Last.Problem, "HTTP 503 Service Unavailable")
				require.Contains(t, midway.Last.Problem, "retrying with backoff")
			} else {
				require.Nil(t, d.LastSuccessAt)
				require.GreaterOrEqual(t, d.FailuresSinceSuccess, tc.minFailures)
			}
		})
	}
}

// TestDeliverWebhookStatusIsBestEffort: a status that cannot be written
// (here a trigger makes PostgreSQL refuse every update of the webhook
// row) neither fails a delivery nor adds a retry.
func TestDeliverWebhookStatusIsBestEffort(t *testing.T) {
	e := newHookEnv(t)
	r := newReceiver(t, 500)
	e.configure(t, r.srv.URL, "whsec_best-effort")
	_, err := e.pool.Exec(context.Background(), `
		CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
		CREATE TRIGGER refuse_update BEFORE UPDATE ON webhooks FOR EACH ROW EXECUTE FUNCTION refuse_update();`)
	require.NoError(t, err)

	require.NoError(t, e.deliver(t, event()))
	require.Len(t, r.deliveries(), 2, "one failure, one delivery: the status writes added no retry")
	w, err := e.st.GetWebhook(context.Background(), tenant)
	require.NoError(t, err)
	require.Nil(t, w.Delivery.Last, "nothing could be recorded")
}
