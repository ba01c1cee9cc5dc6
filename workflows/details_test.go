package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/providers"
)

// TestUIShowsCurrentDetails: the Temporal UI's metadata query answers
// where the link stands and what happens next, without a custom query.
func TestUIShowsCurrentDetails(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	var details string
	s.at(2*time.Minute, func() {
		v, err := s.env.QueryWorkflow("__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		details = md.GetCurrentDetails()
	})
	s.revokeAt(3 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.Contains(t, details, "**active** link `lnk_1` of tenant `acme` at **peer**")
	require.Contains(t, details, "next: refresh at ")
	require.Contains(t, details, "token expires ")
}

// summaryRecorder notes the UI summary of every activity the workflow
// starts.
type summaryRecorder struct {
	interceptor.WorkerInterceptorBase
	got map[string][]string // activity type -> summaries
}

func (r *summaryRecorder) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &summaryInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, r: r}
}

type summaryInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	r *summaryRecorder
}

func (i *summaryInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&summaryOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, r: i.r})
}

type summaryOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	r *summaryRecorder
}

func (o *summaryOutbound) ExecuteActivity(ctx workflow.Context, typ string, args ...any) workflow.Future {
	o.r.got[typ] = append(o.r.got[typ], workflow.GetActivityOptions(ctx).Summary)
	return o.Next.ExecuteActivity(ctx, typ, args...)
}

// TestUIShowsActivitySummaries: every activity in a link's timeline says
// in the Temporal UI what it does, for which provider and why, instead of
// a bare "Refresh" or "RecordTransition".
func TestUIShowsActivitySummaries(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	rec := &summaryRecorder{got: map[string][]string{}}
	s.env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{rec}})
	s.at(7*time.Minute, func() {
		s.env.UpdateWorkflow(UpdateRefresh, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Error(err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, RefreshRequest{})
	})
	s.revokeAt(8 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())

	for typ, sums := range rec.got {
		for _, sum := range sums {
			require.NotEmpty(t, sum, "an activity %s without a summary", typ)
		}
	}
	want := map[string]string{
		ActivityEnroll:  "Enroll at peer (client_credentials grant)",
		ActivityRefresh: "refresh at peer (token expires ",
		ActivityRevoke:  "revoke at peer and wipe the tokens",
	}
	for typ, prefix := range want {
		require.NotEmpty(t, rec.got[typ], "no %s activity ran", typ)
		require.True(t, strings.HasPrefix(rec.got[typ][0], prefix), "%s summary %q, want it to start %q", typ, rec.got[typ][0], prefix)
	}
	require.Contains(t, rec.got[ActivityRefresh], "refresh at peer (forced by a request)")
}
