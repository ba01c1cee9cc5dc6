package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Webhook event types: the transitions a caller can act on. Routine
// refreshes fire none.
const (
	WebhookLinkActive         = "link.active"
	WebhookLinkRefreshFailed  = "link.refresh_failed"
	WebhookLinkReauthRequired = "link.reauth_required"
	WebhookLinkRevoked        = "link.revoked"
	WebhookLinkRecovered      = "link.recovered"
)

// WebhookEventTypes lists every webhook event type.
var WebhookEventTypes = []string{
	WebhookLinkActive, WebhookLinkRefreshFailed, WebhookLinkReauthRequired, WebhookLinkRevoked, WebhookLinkRecovered,
}

// WebhookDeliveryWindow is how long a webhook event is retried before it
// is given up on.
const WebhookDeliveryWindow = 24 * time.Hour

// WebhookEventType maps a transition type to the webhook event it fires,
// "" for none.
func WebhookEventType(transition string) string {
	switch transition {
	case "enrolled", "reauthorized":
		return WebhookLinkActive
	case "refresh_failed":
		return WebhookLinkRefreshFailed
	case "reauth_required", "enroll_failed":
		return WebhookLinkReauthRequired
	case "revoked":
		return WebhookLinkRevoked
	case "recovered", "reenrolled":
		return WebhookLinkRecovered
	}
	return ""
}

// WebhookEvent is one webhook delivery, exactly the JSON body the
// receiver gets. It holds no secret: last_error is built from wire facts.
type WebhookEvent struct {
	// ID is deterministic (derived from the transition's event ID), so a
	// receiver can drop the duplicates at-least-once delivery brings.
	ID        string      `json:"id"`
	Type      string      `json:"type"`
	CreatedAt time.Time   `json:"created_at"`
	Data      WebhookData `json:"data"`
}

// WebhookData is the link a webhook event is about.
type WebhookData struct {
	LinkID    string `json:"link_id"`
	TenantID  string `json:"tenant_id"`
	Provider  string `json:"provider"`
	Status    Status `json:"status"`
	LastError string `json:"last_error"`
}

// WebhookCheck is the input of ActivityWebhookSubscribed.
type WebhookCheck struct {
	TenantID string `json:"tenant_id"`
	Type     string `json:"type"`
}

// WebhookEventID is the webhook event ID of a transition event ID: opaque
// to receivers, and the same however often the workflow replays.
func WebhookEventID(transitionID string) string {
	sum := sha256.Sum256([]byte(transitionID))
	return "evt_" + hex.EncodeToString(sum[:16])
}

// webhookWorkflowID is the delivery workflow's ID. One ID per event makes
// Temporal reject a second delivery workflow for the same event.
func webhookWorkflowID(eventID string) string { return "webhook/" + eventID }

// webhook hands a transition the caller can act on to its own delivery
// workflow.
//
// Why a child workflow with ParentClosePolicy ABANDON: a delivery may be
// retried for up to a day, far longer than a run of the link workflow
// lives (it continues as new every so many refreshes), and the pending
// activities of a closed run are cancelled, so delivering from the link's
// own activities would lose events. An abandoned child outlives its
// parent, retries on its own schedule, shows in the Temporal UI, and its
// ID (the event ID) makes duplicates impossible. The link only waits for
// the child to have started, never for the delivery.
//
// Only tenants with a webhook that wants the event get a child: the
// WebhookSubscribed activity asks first, so links of tenants without a
// webhook (most of them) keep a history and a namespace free of delivery
// workflows. The delivery activity checks the configuration again when it
// runs, so an endpoint removed meanwhile gets nothing.
//
// Guarded by a version marker: histories recorded before webhooks existed
// replay without these commands.
func (l *link) webhook(ctx workflow.Context, t Transition) {
	l.webhookAnswered(ctx, t, nil)
}

// webhookCheck is the subscription question for a transition of type
// event, for an activity to answer on the way (nil: no event to ask for).
func (l *link) webhookCheck(event string) *WebhookCheck {
	if typ := WebhookEventType(event); typ != "" {
		return &WebhookCheck{TenantID: l.p.TenantID, Type: typ}
	}
	return nil
}

// webhookAnswered is webhook with the subscription question already
// answered by the activity that made the transition (subscribed non-nil):
// no WebhookSubscribed activity then.
func (l *link) webhookAnswered(ctx workflow.Context, t Transition, subscribed *bool) {
	typ := WebhookEventType(t.Type)
	if typ == WebhookLinkRefreshFailed && t.State.Failures != 1 {
		// A degraded link retries with backoff and fails again and again;
		// only the first failure of a streak is news.
		typ = ""
	}
	if typ == "" {
		return
	}
	if workflow.GetVersion(ctx, "webhooks", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	ev := webhookEvent(t, typ)
	if subscribed != nil {
		if *subscribed {
			// Counted before the goroutine runs, so that a run boundary
			// waits for the child to start.
			l.hooks++
			workflow.Go(ctx, func(ctx workflow.Context) {
				defer func() { l.hooks-- }()
				startDelivery(ctx, ev)
			})
		}
		return
	}
	run := func(ctx workflow.Context) workflow.Future {
		return workflow.ExecuteActivity(withSummary(workflow.WithActivityOptions(ctx, recordOptions), "webhook: does the tenant want "+typ+"?"), ActivityWebhookSubscribed,
			WebhookCheck{TenantID: t.TenantID, Type: typ})
	}
	check := run(ctx)
	// Until the check answers, the event is carried across a run boundary
	// (see records.go); once the child is being started, the boundary
	// waits for it, which takes Temporal alone.
	l.unchecked = append(l.unchecked, t)
	workflow.Go(ctx, func(ctx workflow.Context) {
		answered, err := outlive(ctx, check, run)
		var subscribed bool
		if err != nil || answered.Get(ctx, &subscribed) != nil {
			return
		}
		if ctx.Err() != nil && workflow.GetVersion(ctx, "records-outlive-cancel", workflow.DefaultVersion, 1) >= 1 {
			// Cancelled: the delivery is started all the same.
			ctx, _ = workflow.NewDisconnectedContext(ctx)
		}
		l.unchecked = slices.DeleteFunc(l.unchecked, func(u Transition) bool { return u.Seq == t.Seq })
		if !subscribed {
			return
		}
		l.hooks++
		defer func() { l.hooks-- }()
		startDelivery(ctx, ev)
	})
}

// webhookEvent is the webhook event of transition t.
func webhookEvent(t Transition, typ string) WebhookEvent {
	return WebhookEvent{
		ID:        WebhookEventID(t.EventID),
		Type:      typ,
		CreatedAt: t.At.UTC(),
		Data: WebhookData{LinkID: t.LinkID, TenantID: t.TenantID, Provider: t.Provider,
			Status: t.To, LastError: t.State.LastError},
	}
}

// startDelivery starts ev's delivery workflow and waits until it started.
func startDelivery(ctx workflow.Context, ev WebhookEvent) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:               webhookWorkflowID(ev.ID),
		ParentClosePolicy:        enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionTimeout: WebhookDeliveryWindow + time.Hour,
	})
	// Already started (a reset replaying this transition, or a check
	// carried across a run boundary after its first answer was lost):
	// the existing delivery stands; nothing else can fail here.
	_ = workflow.ExecuteChildWorkflow(cctx, WorkflowWebhook, ev).GetChildWorkflowExecution().Get(ctx, nil)
}

// WebhookDelivery is the child workflow that delivers one webhook event:
// at least once, retrying with exponential backoff for up to
// WebhookDeliveryWindow, and not at all once the receiver says 410 Gone.
func WebhookDelivery(ctx workflow.Context, ev WebhookEvent) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: WebhookDeliveryWindow,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        10 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Hour,
			NonRetryableErrorTypes: []string{ErrTypeWebhookGone},
		},
	})
	err := workflow.ExecuteActivity(withSummary(actx, "deliver "+ev.Type+" of link "+ev.Data.LinkID), ActivityDeliverWebhook, ev).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == ErrTypeWebhookGone {
		workflow.GetLogger(ctx).Info("webhook receiver answered 410 Gone; event dropped", "event", ev.ID, "type", ev.Type)
		return nil
	}
	return err
}
