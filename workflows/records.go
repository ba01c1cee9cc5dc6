package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The audit trail is written in the background: a PostgreSQL outage must
// delay the audit trail, never a refresh, and never a run boundary.
//
// A routine refresh and an enrollment are recorded by their own activity
// (Refresh, Enroll) on the way; every other transition, and those two when
// their activity could not write, by a RecordTransition activity, which
// retries without limit (its event ID makes every retry idempotent). A
// transition stays in l.unrecorded until its activity succeeded. At a
// continue-as-new boundary the run does not wait for the database: the
// transitions not yet written travel to the next run in
// LinkParams.Unrecorded, which records them again first thing. The same
// holds for webhook events whose subscription check (a PostgreSQL read) has
// not answered yet. A duplicate write of a carried event is a no-op, and
// the sequence number keeps a late write from rolling the link row back.
//
// While the database is down, then, each run's input grows by the
// transitions of that outage (a few hundred bytes each, about two per
// refresh): an outage of a day at one refresh every four minutes carries
// some 700 events, well inside Temporal's payload limits.

// recordOptions: unlimited attempts, backing off to a minute.
var recordOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
	},
}

// record writes t to the audit trail in the background.
func (l *link) record(ctx workflow.Context, t Transition) {
	l.recordInBackground(ctx, []Transition{t}, func(ctx workflow.Context) workflow.Future {
		return workflow.ExecuteActivity(withSummary(workflow.WithActivityOptions(ctx, recordOptions),
			fmt.Sprintf("audit: record %s (seq %d)", t.Type, t.Seq)), ActivityRecord, t)
	})
}

// recordInBackground starts run, the activity that writes ts, and keeps
// ts in l.unrecorded until it succeeded.
func (l *link) recordInBackground(ctx workflow.Context, ts []Transition, run func(workflow.Context) workflow.Future) {
	f := run(ctx)
	l.unrecorded = append(l.unrecorded, ts...)
	workflow.Go(ctx, func(ctx workflow.Context) {
		if _, err := outlive(ctx, f, run); err == nil {
			l.unrecorded = slices.DeleteFunc(l.unrecorded, func(u Transition) bool {
				return slices.ContainsFunc(ts, func(t Transition) bool { return t.Seq == u.Seq })
			})
		}
	})
}

// outlive waits for f, an activity that must finish even when the
// workflow is cancelled: an audit record or a webhook check. Cancelled
// with the workflow (or started after), it is run again by run on a
// context the cancellation does not reach, since the revoke that ends a
// cancelled link waits for every record and webhook event (flushRecords).
// Runs that began before "records-outlive-cancel" sat blocked there. It
// returns the future that settled last, for its result.
func outlive(ctx workflow.Context, f workflow.Future, run func(workflow.Context) workflow.Future) (workflow.Future, error) {
	err := f.Get(ctx, nil)
	if err == nil || ctx.Err() == nil ||
		workflow.GetVersion(ctx, "records-outlive-cancel", workflow.DefaultVersion, 1) < 1 {
		return f, err
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	f = run(dctx)
	return f, f.Get(dctx, nil)
}

// recordBatch writes ts to the audit trail in the background, in one
// activity.
func (l *link) recordBatch(ctx workflow.Context, ts []Transition) {
	l.recordInBackground(ctx, ts, func(ctx workflow.Context) workflow.Future {
		return workflow.ExecuteActivity(withSummary(workflow.WithActivityOptions(ctx, recordOptions),
			fmt.Sprintf("audit: record %d transitions carried from the previous run", len(ts))), ActivityRecordBatch, ts)
	})
}

// resumeCarried records what the previous run could not, and hands its
// webhook events on, before this run does anything else.
func (l *link) resumeCarried(ctx workflow.Context) {
	unrecorded, unhooked := l.p.Unrecorded, l.p.Unhooked
	l.p.Unrecorded, l.p.Unhooked = nil, nil
	if len(unrecorded) > 0 && workflow.GetVersion(ctx, "batch-carried-records", workflow.DefaultVersion, 1) >= 1 {
		// One activity for all of them: a long outage carries many, and
		// one activity per record at every run start would be a storm
		// of failing attempts while the database is still down.
		l.recordBatch(ctx, unrecorded)
		unrecorded = nil
	}
	for _, t := range unrecorded {
		l.record(ctx, t)
	}
	for _, t := range unhooked {
		l.webhook(ctx, t)
	}
}

// carry puts what this run has not finished into the next run's input.
func (l *link) carry(p *LinkParams) {
	p.Unrecorded = slices.Clone(l.unrecorded)
	p.Unhooked = slices.Clone(l.unchecked)
}

// recordsDone reports whether every audit record of this run is written
// and every webhook event handed to its delivery workflow.
func (l *link) recordsDone() bool {
	return len(l.unrecorded) == 0 && len(l.unchecked) == 0 && l.hooks == 0
}

// flushRecords waits until every audit record of this run is written and
// every webhook event is handed to its delivery workflow: for a run that
// ends the link, whose history has no next run to carry them to.
func (l *link) flushRecords(ctx workflow.Context) {
	_ = workflow.Await(ctx, l.recordsDone)
}
