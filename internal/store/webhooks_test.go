package store

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestWebhookPutGetDelete(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)

	_, err := s.GetWebhook(ctx, DefaultTenantID)
	require.ErrorIs(t, err, ErrNotFound)

	w, created, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: "https://hooks.example/a", Events: []string{"link.revoked"}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, []string{"link.revoked"}, w.Events)
	require.True(t, w.Wants("link.revoked"))
	require.False(t, w.Wants("link.active"))

	w2, created, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: "https://hooks.example/b"})
	require.NoError(t, err)
	require.False(t, created, "a second put replaces")
	require.Equal(t, w.CreatedAt, w2.CreatedAt)
	require.Empty(t, w2.Events)
	require.True(t, w2.Wants("link.active"), "no events means all")

	got, err := s.GetWebhook(ctx, DefaultTenantID)
	require.NoError(t, err)
	require.Equal(t, w2, got)

	// The Tx twins see and lock the same row.
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		locked, err := s.LockWebhookTx(ctx, tx, DefaultTenantID)
		require.NoError(t, err)
		require.Equal(t, "https://hooks.example/b", locked.URL)
		return s.DeleteWebhookTx(ctx, tx, DefaultTenantID)
	}))
	require.ErrorIs(t, s.DeleteWebhook(ctx, DefaultTenantID), ErrNotFound)

	_, _, err = s.PutWebhook(ctx, Webhook{TenantID: "no-such-tenant", URL: "https://hooks.example/"})
	require.ErrorIs(t, err, ErrNotFound)
}

func TestWebhookDeliveryStatus(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	const url = "https://hooks.example/status"
	_, _, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: url})
	require.NoError(t, err)
	w, err := s.GetWebhook(ctx, DefaultTenantID)
	require.NoError(t, err)
	require.Equal(t, WebhookDelivery{}, w.Delivery, "nothing attempted yet")

	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	failed := func(s int, problem string, retrying bool) DeliveryOutcome {
		return DeliveryOutcome{TenantID: DefaultTenantID, URL: url, DeliveryAttempt: DeliveryAttempt{
			At: at(s), EventID: "evt_" + strconv.Itoa(s), EventType: "link.revoked", Problem: problem, Retrying: retrying}}
	}
	delivered := func(s int) DeliveryOutcome {
		o := failed(s, "ignored when delivered", true)
		o.OK = true
		return o
	}
	ptr := func(t time.Time) *time.Time { return &t }
	for _, step := range []struct {
		name        string
		outcome     DeliveryOutcome
		last        DeliveryAttempt
		lastSuccess *time.Time
		failures    int
	}{
		{"a refusal", failed(10, "refused: internal address", false),
			DeliveryAttempt{At: at(10), EventID: "evt_10", EventType: "link.revoked", Problem: "refused: internal address"}, nil, 1},
		{"a retried failure; controls and length tamed", failed(20, "HTTP 503\r\n\x1b[31mforged "+strings.Repeat("x", 400), true),
			DeliveryAttempt{At: at(20), EventID: "evt_20", EventType: "link.revoked", Retrying: true,
				Problem: "HTTP 503  \x20[31mforged " + strings.Repeat("x", 300-len("HTTP 503  \x20[31mforged "))}, nil, 2},
		{"an older failure reported late counts but does not replace the last", failed(15, "timed out", true),
			DeliveryAttempt{At: at(20), EventID: "evt_20", EventType: "link.revoked", Retrying: true,
				Problem: "HTTP 503  \x20[31mforged " + strings.Repeat("x", 300-len("HTTP 503  \x20[31mforged "))}, nil, 3},
		{"a success resets the count; its problem is dropped", delivered(30),
			DeliveryAttempt{At: at(30), EventID: "evt_30", EventType: "link.revoked", OK: true}, ptr(at(30)), 0},
		{"a failure older than the success is not counted", failed(25, "HTTP 500", true),
			DeliveryAttempt{At: at(30), EventID: "evt_30", EventType: "link.revoked", OK: true}, ptr(at(30)), 0},
		{"a failure after it is", failed(40, "", true),
			DeliveryAttempt{At: at(40), EventID: "evt_40", EventType: "link.revoked", Retrying: true, Problem: "not delivered"}, ptr(at(30)), 1},
		{"a success older than the last attempt keeps the count", delivered(35),
			DeliveryAttempt{At: at(40), EventID: "evt_40", EventType: "link.revoked", Retrying: true, Problem: "not delivered"}, ptr(at(35)), 1},
	} {
		require.NoError(t, s.RecordWebhookDelivery(ctx, step.outcome), step.name)
		w, err := s.GetWebhook(ctx, DefaultTenantID)
		require.NoError(t, err, step.name)
		require.NotNil(t, w.Delivery.Last, step.name)
		require.Equal(t, step.last, *w.Delivery.Last, step.name)
		require.Equal(t, step.lastSuccess, w.Delivery.LastSuccessAt, step.name)
		require.Equal(t, step.failures, w.Delivery.FailuresSinceSuccess, step.name)
	}

	// An outcome for a URL replaced meanwhile is dropped, and a new URL
	// starts with no status; the same URL put again keeps it.
	same, _, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: url, Events: []string{"link.active"}})
	require.NoError(t, err)
	require.Equal(t, 1, same.Delivery.FailuresSinceSuccess, "same URL, same status")
	moved, _, err := s.PutWebhook(ctx, Webhook{TenantID: DefaultTenantID, URL: url + "/v2"})
	require.NoError(t, err)
	require.Equal(t, WebhookDelivery{}, moved.Delivery, "a new URL starts afresh")
	require.NoError(t, s.RecordWebhookDelivery(ctx, failed(50, "HTTP 500", true)), "the old URL's outcome")
	w, err = s.GetWebhook(ctx, DefaultTenantID)
	require.NoError(t, err)
	require.Equal(t, WebhookDelivery{}, w.Delivery, "an outcome for the old URL is not recorded")

	// Without a webhook there is nothing to record, and no error.
	require.NoError(t, s.DeleteWebhook(ctx, DefaultTenantID))
	require.NoError(t, s.RecordWebhookDelivery(ctx, failed(60, "HTTP 500", true)))
	require.Error(t, s.RecordWebhookDelivery(ctx, DeliveryOutcome{TenantID: DefaultTenantID, URL: url}), "no time")
}
