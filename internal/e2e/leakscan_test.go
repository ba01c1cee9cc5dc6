package e2e

import (
	"encoding/base64"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokenwarden/tokenwarden/internal/codec"
)

// plantedEvents builds history events that each carry secret in one of
// the places a leak could hide.
func plantedEvents(t *testing.T, secret string, dc converter.DataConverter) map[string]*historypb.HistoryEvent {
	t.Helper()
	payloads := func(v any) *commonpb.Payloads {
		p, err := dc.ToPayloads(v)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	payload := func(v any) *commonpb.Payload { return payloads(v).Payloads[0] }
	type tokenInfo struct {
		AccessToken string `json:"access_token"`
	}
	return map[string]*historypb.HistoryEvent{
		"activity result": {EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
			Attributes: &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{
				Result: payloads(tokenInfo{AccessToken: secret})}}},
		"signal argument": {EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
				SignalName: "authorized", Input: payloads(map[string]string{"code": secret})}}},
		"search attribute": {EventType: enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
			Attributes: &historypb.HistoryEvent_UpsertWorkflowSearchAttributesEventAttributes{UpsertWorkflowSearchAttributesEventAttributes: &historypb.UpsertWorkflowSearchAttributesEventAttributes{
				SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"TokenwardenStatus": payload(secret)}}}}},
		"memo": {EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{
				Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{"note": payload("password <" + secret + ">")}}}}},
		"failure message": {EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
			Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{
				Failure: &failurepb.Failure{Message: "refresh failed: token " + secret + " rejected"}}}},
		"failure details": {EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
			Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{
				Failure: &failurepb.Failure{Message: "failed", FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
					Details: payloads(secret)}}}}}},
	}
}

// TestLeakScanFindsPlantedSecrets: the scan must find a secret in every
// place it can hide in a history, with and without an encrypting codec.
// The protojson rendering the scan used alone before finds none of those
// in payloads.
func TestLeakScanFindsPlantedSecrets(t *testing.T) {
	secret := "s3cr3t-" + strings.Repeat("x", 12) + "&<>/+"
	keyring, err := codec.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	if err != nil {
		t.Fatal(err)
	}
	enc := codec.NewCodec(keyring)
	for _, c := range []struct {
		name  string
		codec converter.PayloadCodec
	}{{"plain", nil}, {"encrypted", enc}} {
		t.Run(c.name, func(t *testing.T) {
			dc := converter.GetDefaultDataConverter()
			if c.codec != nil {
				dc = converter.NewCodecDataConverter(dc, c.codec)
			}
			for where, ev := range plantedEvents(t, secret, dc) {
				h, err := haystack(ev, c.codec)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if !strings.Contains(h, secret) {
					t.Errorf("the scan missed a secret in the %s", where)
				}
				old, _ := protojson.Marshal(ev)
				if where != "failure message" && strings.Contains(string(old), secret) {
					t.Errorf("%s: protojson alone shows the secret; the planted case proves nothing", where)
				}
			}
		})
	}
}
