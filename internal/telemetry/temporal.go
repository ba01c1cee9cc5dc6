package telemetry

import (
	"fmt"

	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/workflows"
)

// spanKey is where the Temporal tracing interceptor keeps the current
// span in a workflow context; followUpdates reads and sets it.
type spanKey struct{}

// Follows names, per workflow update, the activities a run of the update
// leads the workflow to start from its main loop, e.g. the link's
// "refresh" update and its "Refresh" activity.
type Follows map[string][]string

// TemporalInterceptors are the Temporal client's interceptors (the worker
// takes them from its client): the SDK's OpenTelemetry tracing of
// workflow starts, updates, signals, queries and activities, and
// followUpdates. None when tracing is off.
//
// The link workflow serves an update by waking its main loop, which
// starts the activity in the loop's own context, that of the run's start:
// the activity would belong to the trace of the link's creation rather
// than to the request's. For the updates in follows, followUpdates starts
// those activities as children of the oldest update still waiting, so a
// caller's request, the update, the activity and its provider call make
// one trace.
func (t *Telemetry) TemporalInterceptors(follows Follows) ([]interceptor.ClientInterceptor, error) {
	if !t.Enabled() {
		return nil, nil
	}
	tracing, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		Tracer:            t.tp.Tracer("go.temporal.io/sdk"),
		TextMapPropagator: t.prop,
		SpanContextKey:    spanKey{},
	})
	if err != nil {
		return nil, fmt.Errorf("temporal tracing interceptor: %w", err)
	}
	// Order matters: tracing first, so that followUpdates sees the
	// update's span on the way in and hands the activity's parent to
	// tracing on the way out.
	return []interceptor.ClientInterceptor{tracing, &followUpdates{follows: follows}}, nil
}

// followUpdates is a worker interceptor; see TemporalInterceptors.
type followUpdates struct {
	interceptor.InterceptorBase
	follows Follows
}

func (f *followUpdates) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	in := &followInbound{follows: f.follows}
	in.Next = next
	return in
}

// followInbound lives as long as one workflow execution on this worker.
// Everything here runs on the workflow's coroutines, one at a time, so it
// needs no lock; it changes no command, so replay is unaffected.
type followInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	follows Follows
	// waiting are the updates whose handler runs, oldest first; next
	// numbers them.
	waiting []waitingUpdate
	next    int
}

type waitingUpdate struct {
	id   int
	name string
	span any
}

func (f *followInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	out := &followOutbound{in: f}
	out.Next = outbound
	return f.Next.Init(out)
}

func (f *followInbound) ExecuteUpdate(ctx workflow.Context, in *interceptor.UpdateInput) (any, error) {
	span := ctx.Value(spanKey{})
	if _, ok := f.follows[in.Name]; !ok || span == nil {
		return f.Next.ExecuteUpdate(ctx, in)
	}
	f.next++
	id := f.next
	f.waiting = append(f.waiting, waitingUpdate{id: id, name: in.Name, span: span})
	defer f.done(id)
	return f.Next.ExecuteUpdate(ctx, in)
}

// done forgets the update numbered id.
func (f *followInbound) done(id int) {
	for i, w := range f.waiting {
		if w.id == id {
			f.waiting = append(f.waiting[:i], f.waiting[i+1:]...)
			return
		}
	}
}

// parentFor is the span of the oldest waiting update that leads to
// activity, or nil.
func (f *followInbound) parentFor(activity string) any {
	for _, w := range f.waiting {
		for _, a := range f.follows[w.name] {
			if a == activity {
				return w.span
			}
		}
	}
	return nil
}

type followOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	in *followInbound
}

func (f *followOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if span := f.in.parentFor(activityType); span != nil {
		ctx = workflow.WithValue(ctx, spanKey{}, span)
	}
	return f.Next.ExecuteActivity(ctx, activityType, args...)
}

// LinkUpdates are the link workflow's updates served by its main loop,
// with the activities they lead to.
var LinkUpdates = Follows{
	workflows.UpdateRefresh: {workflows.ActivityRefresh},
	workflows.UpdateRevoke:  {workflows.ActivityRevoke},
}
