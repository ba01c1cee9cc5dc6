package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestAppendEventIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	e := Event{
		ID: "wf-" + l.ID + "/1", TenantID: l.TenantID, LinkID: l.ID, Type: EventEnrolled,
		ToStatus: "active", Detail: map[string]any{"attempt": float64(1)}, OccurredAt: at,
	}
	inserted, err := s.AppendEvent(ctx, e)
	require.NoError(t, err)
	require.True(t, inserted)

	changed := e
	changed.Type = EventRevoked
	inserted, err = s.AppendEvent(ctx, changed)
	require.NoError(t, err)
	require.False(t, inserted, "same ID is ignored")

	events, next, err := s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, events, 1)
	require.Equal(t, e, events[0], "the first write wins")

	// Zero time means the database's now.
	before := time.Now().Add(-time.Minute)
	_, err = s.AppendEvent(ctx, Event{ID: "auto-time", TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshed})
	require.NoError(t, err)
	events, _, err = s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Len(t, events, 2)
	require.True(t, events[1].OccurredAt.After(before))
	require.Empty(t, events[1].FromStatus)

	_, err = s.AppendEvent(ctx, Event{ID: "x", TenantID: l.TenantID, LinkID: "lnk_missing", Type: EventRefreshed})
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.AppendEvent(ctx, Event{TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshed})
	require.Error(t, err, "an event needs an ID")
}

func TestAppendEventTx(t *testing.T) {
	t.Parallel()
	s, pool := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	// Rolled back with the caller's transaction.
	errRollback := errors.New("caller fails after appending")
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		inserted, err := s.AppendEventTx(ctx, tx, Event{ID: "rolled-back", TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshed})
		require.NoError(t, err)
		require.True(t, inserted)
		return errRollback
	})
	require.ErrorIs(t, err, errRollback)
	events, _, err := s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Empty(t, events)

	// Committed with it.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := s.UpdateLinkStateTx(ctx, tx, LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: 1, Status: "active"}); err != nil {
			return err
		}
		_, err := s.AppendEventTx(ctx, tx, Event{ID: "committed", TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshed})
		return err
	})
	require.NoError(t, err)
	events, _, err = s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "committed", events[0].ID)
}

func TestListEventsPagination(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)
	other, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("%s/%d", l.ID, i)
		// Two events share a timestamp: the ID breaks the tie.
		at := base.Add(time.Duration(i/2) * time.Second)
		_, err := s.AppendEvent(ctx, Event{ID: id, TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshed, OccurredAt: at})
		require.NoError(t, err)
		want = append(want, id)
		_, err = s.AppendEvent(ctx, Event{ID: fmt.Sprintf("%s/%d", other.ID, i), TenantID: l.TenantID, LinkID: other.ID, Type: EventRefreshed, OccurredAt: at})
		require.NoError(t, err)
	}

	var got []string
	cur := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "pagination does not terminate")
		events, next, err := s.ListEvents(ctx, l.TenantID, l.ID, cur, 2)
		require.NoError(t, err)
		for _, e := range events {
			require.Equal(t, l.ID, e.LinkID)
			got = append(got, e.ID)
		}
		if next == "" {
			break
		}
		cur = next
	}
	require.Equal(t, want, got)

	_, _, err = s.ListEvents(ctx, l.TenantID, l.ID, "garbage!", 2)
	require.ErrorIs(t, err, ErrBadCursor)
	_, _, err = s.ListEvents(ctx, l.TenantID, "lnk_missing", "", 2)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestRecordTransition(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	st := LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: 1, Status: "active", RefreshCount: 0}
	ev := Event{ID: l.ID + "/1", TenantID: l.TenantID, LinkID: l.ID, Type: EventStatusChanged, FromStatus: "pending", ToStatus: "active"}
	require.NoError(t, s.RecordTransition(ctx, st, ev))

	// Replay: nothing changes.
	before, err := s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.NoError(t, s.RecordTransition(ctx, st, ev))
	after, err := s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, "active", after.Status)
	events, _, err := s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "pending", events[0].FromStatus)
	require.Equal(t, "active", events[0].ToStatus)

	// A failing event rolls the state back with it.
	bad := Event{ID: l.ID + "/2", TenantID: l.TenantID, LinkID: l.ID} // no type
	err = s.RecordTransition(ctx, LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: 2, Status: "failed"}, bad)
	require.Error(t, err)
	got, err := s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "active", got.Status)
	require.Equal(t, int64(1), got.StateSeq)

	// A stale state is not applied, but its new event is kept.
	stale := Event{ID: l.ID + "/stale", TenantID: l.TenantID, LinkID: l.ID, Type: EventRefreshFailed}
	require.NoError(t, s.RecordTransition(ctx, LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: 1, Status: "failed"}, stale))
	got, err = s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "active", got.Status)
	events, _, err = s.ListEvents(ctx, l.TenantID, l.ID, "", 0)
	require.NoError(t, err)
	require.Len(t, events, 2)

	// A missing link appends nothing.
	err = s.RecordTransition(ctx,
		LinkState{TenantID: l.TenantID, LinkID: "lnk_missing", Seq: 1, Status: "x"},
		Event{ID: "m/1", TenantID: l.TenantID, LinkID: "lnk_missing", Type: EventRefreshed})
	require.ErrorIs(t, err, ErrNotFound)

	// State and event must describe the same link.
	err = s.RecordTransition(ctx, st, Event{ID: "x", TenantID: l.TenantID, LinkID: "lnk_other", Type: EventRefreshed})
	require.Error(t, err)
}
