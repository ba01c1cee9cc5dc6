package codec_test

// Against the test stack's real Temporal server: a worker and a client
// with the codec run workflows, and a client without it reads the raw
// history to check that nothing readable reached the server.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/tokenwarden/tokenwarden/internal/codec"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

func echoActivity(_ context.Context, g grant) (grant, error) {
	g.Scopes = append(g.Scopes, "echoed")
	return g, nil
}

func echoWorkflow(ctx workflow.Context, g grant) (grant, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out grant
	if err := workflow.ExecuteActivity(ctx, echoActivity, g).Get(ctx, &out); err != nil {
		return grant{}, err
	}
	return out, nil
}

func failingWorkflow(_ workflow.Context, g grant) error {
	return temporal.NewNonRetryableApplicationError("token endpoint said: "+g.Subject, "RefreshError", nil)
}

func TestIntegrationHistoryIsEncrypted(t *testing.T) {
	plain, ns := testenv.Temporal(t) // default converter: sees what the server stores
	info := testenv.StackInfo(t)
	k := keyring(t, "k1:"+newKey(t))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:         info.TemporalAddress,
		Namespace:        ns,
		DataConverter:    codec.DataConverter(k),
		FailureConverter: codec.FailureConverter(k),
		Logger:           sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	require.NoError(t, err)
	defer c.Close()

	queue := testenv.Name(t, 60)
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflow(echoWorkflow)
	w.RegisterWorkflow(failingWorkflow)
	w.RegisterActivity(echoActivity)
	require.NoError(t, w.Start())
	defer w.Stop()

	in := grant{Subject: marker, Scopes: []string{"openid"}}

	t.Run("inputs and results", func(t *testing.T) {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "echo-" + queue, TaskQueue: queue}, echoWorkflow, in)
		require.NoError(t, err)
		var out grant
		require.NoError(t, run.Get(ctx, &out))
		assert.Equal(t, marker, out.Subject)
		assert.Equal(t, []string{"openid", "echoed"}, out.Scopes)

		events := history(ctx, t, plain, run)
		var seen []string
		for _, e := range events {
			var payloads []*commonpb.Payload
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				payloads = e.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				payloads = e.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads()
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
				payloads = e.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads()
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
				payloads = e.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()
			default:
				continue
			}
			seen = append(seen, e.GetEventType().String())
			require.NotEmpty(t, payloads, e.GetEventType().String())
			for _, p := range payloads {
				assertEncrypted(t, k, p, e.GetEventType().String())
			}
		}
		assert.Len(t, seen, 4, "events with payloads: %v", seen)
		assertNoPlaintext(t, events)
	})

	t.Run("failure messages", func(t *testing.T) {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "fail-" + queue, TaskQueue: queue}, failingWorkflow, in)
		require.NoError(t, err)
		err = run.Get(ctx, nil)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "got %v", err)
		// The codec client reads the message back.
		assert.Equal(t, "token endpoint said: "+marker, appErr.Message())
		assert.Equal(t, "RefreshError", appErr.Type())

		events := history(ctx, t, plain, run)
		var failed *historypb.WorkflowExecutionFailedEventAttributes
		for _, e := range events {
			if a := e.GetWorkflowExecutionFailedEventAttributes(); a != nil {
				failed = a
			}
		}
		require.NotNil(t, failed, "no WorkflowExecutionFailed event")
		assert.Equal(t, "Encoded failure", failed.GetFailure().GetMessage())
		assertEncrypted(t, k, failed.GetFailure().GetEncodedAttributes(), "failure attributes")
		assertNoPlaintext(t, events)
	})
}

func history(ctx context.Context, t *testing.T, c client.Client, run client.WorkflowRun) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	iter := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		events = append(events, e)
	}
	require.NotEmpty(t, events)
	return events
}

// assertEncrypted checks a payload as the server stored it: our metadata,
// no plaintext, and our codec opens it.
func assertEncrypted(t *testing.T, k *codec.Keyring, p *commonpb.Payload, what string) {
	t.Helper()
	require.NotNil(t, p, what)
	assert.Equal(t, codec.MetadataEncodingEncrypted, string(p.GetMetadata()[converter.MetadataEncoding]), what)
	assert.Equal(t, k.CurrentKeyID(), string(p.GetMetadata()[codec.MetadataEncryptionKeyID]), what)
	assert.NotContains(t, string(p.GetData()), marker, what)
	decoded, err := codec.NewCodec(k).Decode([]*commonpb.Payload{p})
	require.NoError(t, err, what)
	assert.Contains(t, string(decoded[0].GetData()), marker, what)
}

// assertNoPlaintext scans every byte of the stored history: whatever field
// the SDK puts things in, the marker must not be there.
func assertNoPlaintext(t *testing.T, events []*historypb.HistoryEvent) {
	t.Helper()
	for _, e := range events {
		b, err := proto.Marshal(e)
		require.NoError(t, err)
		if bytes.Contains(b, []byte(marker)) || strings.Contains(e.String(), marker) {
			t.Errorf("event %d (%s) holds the plaintext", e.GetEventId(), e.GetEventType())
		}
	}
}
