package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Goals of a routine refresh cycle (issue: "a lean refresh cycle"): the
// history grows by at most leanEvents and Temporal bills at most
// leanActions (activities, timers, search-attribute upserts, signals,
// updates) per refresh.
const (
	leanEvents  = 12
	leanActions = 3
)

// leanEnrollActivities is the activities an enrollment runs: Enroll.
const leanEnrollActivities = 1

// activitiesBeforeFirstRefresh counts the activities scheduled before the
// first Refresh.
func activitiesBeforeFirstRefresh(events []*historypb.HistoryEvent) int {
	n := 0
	for _, ev := range events {
		a := ev.GetActivityTaskScheduledEventAttributes()
		if a == nil {
			continue
		}
		if a.GetActivityType().GetName() == workflows.ActivityRefresh {
			break
		}
		n++
	}
	return n
}

// cycleCost counts, between consecutive Refresh activities of a history,
// the events and the billable actions.
func cycleCost(events []*historypb.HistoryEvent) (perCycle [][2]int) {
	last := -1
	for i, ev := range events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a == nil || a.GetActivityType().GetName() != workflows.ActivityRefresh {
			continue
		}
		if last >= 0 {
			actions := 0
			for _, e := range events[last:i] {
				switch e.GetEventType() {
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_TIMER_STARTED,
					enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
					enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
					actions++
				}
			}
			perCycle = append(perCycle, [2]int{i - last, actions})
		}
		last = i
	}
	return perCycle
}

// TestRoutineRefreshIsLean measures a client-credentials link's history on
// the real server: every routine refresh after the first costs at most
// leanEvents events and leanActions billable actions, and the audit
// trail still holds every refresh. Before the lean cycle a refresh cost
// about 25 events and 7 actions (see workflows/testdata/pre-lean-*).
func TestRoutineRefreshIsLean(t *testing.T) {
	t.Parallel()
	e := newEngine(t, oidcpeer.Options{ClientCredentialsTTL: 3 * time.Second})
	e.StartWorker()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := e.createLink(ctx, providers.GrantClientCredentials, providers.Grant{})
	st := e.WaitFor(ctx, id, "five refreshes", func(st workflows.State) bool { return st.Refreshes >= 5 })

	it := e.Temporal.GetWorkflowHistory(ctx, workflows.WorkflowID(tenant, id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	cycles := cycleCost(events)
	if len(cycles) < 3 {
		t.Fatalf("only %d complete refresh cycles in the history", len(cycles))
	}
	// The first cycle follows enrollment; the routine ones come after.
	for i, c := range cycles[1:] {
		if c[0] > leanEvents || c[1] > leanActions {
			t.Errorf("refresh cycle %d: %d events and %d billable actions, want at most %d and %d", i+2, c[0], c[1], leanEvents, leanActions)
		}
	}
	t.Logf("routine refresh cycles (events, actions): %v", cycles[1:])
	// Enrollment is lean too: Enroll writes its record and answers the
	// webhook question (the tenant has no webhook), so it is the only
	// activity before the first refresh (before "lean-enroll": Enroll,
	// RecordTransition and WebhookSubscribed).
	if n := activitiesBeforeFirstRefresh(events); n != leanEnrollActivities {
		t.Errorf("enrollment ran %d activities, want %d", n, leanEnrollActivities)
	}

	// Every refresh is in the audit trail, written by the activity.
	evs, _, err := e.Store.ListEvents(ctx, tenant, id, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	refreshed := 0
	for _, ev := range evs {
		if ev.Type == "refreshed" {
			refreshed++
		}
		if strings.Contains(ev.Type, "refresh_started") {
			t.Errorf("a lean cycle records no refresh_started event")
		}
	}
	if refreshed < st.Refreshes {
		t.Errorf("audit trail has %d refreshes, the workflow counted %d", refreshed, st.Refreshes)
	}
	e.Token(ctx, id) // its secrets join the leak scan
	e.ScanForSecrets(ctx)
}
