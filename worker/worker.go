// Package worker hosts the link workflow and its activities on a Temporal
// task queue.
package worker

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// New returns a worker for the link task queue with everything registered.
func New(c client.Client, a *activities.Activities, opts sdkworker.Options) sdkworker.Worker {
	w := sdkworker.New(c, workflows.TaskQueue, opts)
	Register(w, a)
	return w
}

// Register puts the link workflow and its activities on a registry (a
// worker, or a test environment), under the names the workflow uses.
func Register(r sdkworker.Registry, a *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.Link, workflow.RegisterOptions{Name: "Link"})
	r.RegisterWorkflowWithOptions(workflows.WebhookDelivery, workflow.RegisterOptions{Name: workflows.WorkflowWebhook})
	for name, fn := range map[string]any{
		workflows.ActivityEnroll:      a.Enroll,
		workflows.ActivityPollDevice:  a.PollDevice,
		workflows.ActivityRefresh:     a.Refresh,
		workflows.ActivityRevoke:      a.Revoke,
		workflows.ActivitySuspend:     a.Suspend,
		workflows.ActivityRecord:      a.RecordTransition,
		workflows.ActivityRecordBatch: a.RecordTransitions,

		workflows.ActivityWebhookSubscribed: a.WebhookSubscribed,
		workflows.ActivityDeliverWebhook:    a.DeliverWebhook,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
