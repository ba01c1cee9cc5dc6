package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestLink(tenantID string) Link {
	id := NewLinkID()
	return Link{
		ID:        id,
		TenantID:  tenantID,
		Provider:  "google",
		UserID:    "user-1",
		GrantType: "authorization_code",
		Scopes:    []string{"openid", "email"},
		Status:    "pending",
		VaultPath: "tokenwarden/links/" + tenantID + "/" + id,
		Metadata:  map[string]any{"region": "eu"},
	}
}

func TestCreateAndGetLink(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)

	in := newTestLink(DefaultTenantID)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	in.ExpiresAt = &exp
	got, created, err := s.CreateLink(ctx, in)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, in.ID, got.ID)
	require.Equal(t, []string{"openid", "email"}, got.Scopes)
	require.Equal(t, map[string]any{"region": "eu"}, got.Metadata)
	require.True(t, exp.Equal(*got.ExpiresAt))
	require.Nil(t, got.NextRefreshAt)
	require.Empty(t, got.LastError)
	require.False(t, got.CreatedAt.IsZero())

	fetched, err := s.GetLink(ctx, DefaultTenantID, in.ID)
	require.NoError(t, err)
	require.Equal(t, got, fetched)

	_, err = s.GetLink(ctx, DefaultTenantID, "lnk_missing")
	require.ErrorIs(t, err, ErrNotFound)

	// Generated ID and defaults.
	bare := newTestLink(DefaultTenantID)
	bare.ID, bare.Scopes, bare.Metadata = "", nil, nil
	got, created, err = s.CreateLink(ctx, bare)
	require.NoError(t, err)
	require.True(t, created)
	require.Regexp(t, `^lnk_[a-z2-7]{24}$`, got.ID)
	require.Equal(t, []string{}, got.Scopes)
	require.Equal(t, map[string]any{}, got.Metadata)

	// Unknown tenant and missing fields are clear errors.
	_, _, err = s.CreateLink(ctx, newTestLink("nope"))
	require.ErrorIs(t, err, ErrNotFound)
	bad := newTestLink(DefaultTenantID)
	bad.VaultPath = ""
	_, _, err = s.CreateLink(ctx, bad)
	require.Error(t, err)
}

func TestCreateLinkIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	_, err := s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)

	first := newTestLink(DefaultTenantID)
	first.IdempotencyKey = "req-1"
	got1, created, err := s.CreateLink(ctx, first)
	require.NoError(t, err)
	require.True(t, created)

	retry := newTestLink(DefaultTenantID) // fresh ID, same key
	retry.IdempotencyKey = "req-1"
	got2, created, err := s.CreateLink(ctx, retry)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, got1, got2, "retry returns the first link")

	// Same key, other tenant: independent.
	otherTenant := newTestLink("other")
	otherTenant.IdempotencyKey = "req-1"
	got3, created, err := s.CreateLink(ctx, otherTenant)
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, got1.ID, got3.ID)

	// Same key, different request.
	mismatch := newTestLink(DefaultTenantID)
	mismatch.IdempotencyKey = "req-1"
	mismatch.Provider = "github"
	_, _, err = s.CreateLink(ctx, mismatch)
	require.ErrorIs(t, err, ErrIdempotencyConflict)

	// Concurrent creators with one key: exactly one creates.
	const n = 4
	var wg sync.WaitGroup
	ids := make([]string, n)
	createdFlags := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := newTestLink(DefaultTenantID)
			l.IdempotencyKey = "req-concurrent"
			got, c, err := s.CreateLink(ctx, l)
			ids[i], createdFlags[i], errs[i] = got.ID, c, err
		}()
	}
	wg.Wait()
	creations := 0
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i])
		if createdFlags[i] {
			creations++
		}
	}
	require.Equal(t, 1, creations)

	// Links without a key never collide.
	for range 2 {
		_, created, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
		require.NoError(t, err)
		require.True(t, created)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	_, err := s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)

	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	_, err = s.GetLink(ctx, "other", l.ID)
	require.ErrorIs(t, err, ErrNotFound)

	links, _, err := s.ListLinks(ctx, "other", ListFilter{})
	require.NoError(t, err)
	require.Empty(t, links)

	_, err = s.UpdateLinkState(ctx, LinkState{TenantID: "other", LinkID: l.ID, Seq: 1, Status: "active"})
	require.ErrorIs(t, err, ErrNotFound)

	_, err = s.AppendEvent(ctx, Event{ID: "e1", TenantID: "other", LinkID: l.ID, Type: EventEnrolled})
	require.ErrorIs(t, err, ErrNotFound)

	_, _, err = s.ListEvents(ctx, "other", l.ID, "", 10)
	require.ErrorIs(t, err, ErrNotFound)

	err = s.PutOAuthState(ctx, "state-value-long-enough", OAuthState{TenantID: "other", LinkID: l.ID, ExpiresAt: time.Now().Add(time.Minute)})
	require.ErrorIs(t, err, ErrNotFound)

	// Untouched for its own tenant.
	got, err := s.GetLink(ctx, DefaultTenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "pending", got.Status)
	require.Zero(t, got.StateSeq)
}

func TestListLinksPagination(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)
	_, err := s.EnsureTenant(ctx, "other", "Other")
	require.NoError(t, err)

	// 7 google links for user-1, interleaved with links the filter must skip.
	var want []string
	for i := range 7 {
		l := newTestLink(DefaultTenantID)
		got, _, err := s.CreateLink(ctx, l)
		require.NoError(t, err)
		want = append(want, got.ID)

		noise := newTestLink(DefaultTenantID)
		noise.Provider = "github"
		_, _, err = s.CreateLink(ctx, noise)
		require.NoError(t, err)
		if i%2 == 0 {
			noise := newTestLink(DefaultTenantID)
			noise.UserID = fmt.Sprintf("user-%d", i+100)
			_, _, err = s.CreateLink(ctx, noise)
			require.NoError(t, err)
		}
		_, _, err = s.CreateLink(ctx, newTestLink("other"))
		require.NoError(t, err)
	}

	filter := ListFilter{Provider: "google", UserID: "user-1", Status: "pending", Limit: 3}
	var got []string
	var pages int
	for {
		links, next, err := s.ListLinks(ctx, DefaultTenantID, filter)
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(links), 3)
		for _, l := range links {
			require.Equal(t, "google", l.Provider)
			require.Equal(t, "user-1", l.UserID)
			require.Equal(t, DefaultTenantID, l.TenantID)
			got = append(got, l.ID)
		}
		if next == "" {
			break
		}
		require.Less(t, pages, 10, "pagination does not terminate")
		filter.Cursor = next
	}
	require.Equal(t, 3, pages)
	require.Equal(t, want, got, "every link once, in creation order")

	// Filters that match nothing, and an unfiltered count.
	links, next, err := s.ListLinks(ctx, DefaultTenantID, ListFilter{Status: "revoked"})
	require.NoError(t, err)
	require.Empty(t, links)
	require.Empty(t, next)
	links, _, err = s.ListLinks(ctx, DefaultTenantID, ListFilter{})
	require.NoError(t, err)
	require.Len(t, links, 7+7+4)

	// An exact multiple of the page size ends without an empty extra page.
	links, next, err = s.ListLinks(ctx, "other", ListFilter{Limit: 7})
	require.NoError(t, err)
	require.Len(t, links, 7)
	require.Empty(t, next)

	for _, bad := range []string{"!!!", "bm90IGpzb24", "e30", "eyJ0IjoieCJ9"} {
		_, _, err = s.ListLinks(ctx, DefaultTenantID, ListFilter{Cursor: bad})
		require.ErrorIs(t, err, ErrBadCursor, "cursor %q", bad)
	}
}

func TestUpdateLinkState(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)

	l, _, err := s.CreateLink(ctx, newTestLink(DefaultTenantID))
	require.NoError(t, err)

	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	next := exp.Add(-5 * time.Minute)
	applied, err := s.UpdateLinkState(ctx, LinkState{
		TenantID: l.TenantID, LinkID: l.ID, Seq: 2, Status: "active",
		ExpiresAt: &exp, NextRefreshAt: &next, RefreshCount: 1,
	})
	require.NoError(t, err)
	require.True(t, applied)

	got, err := s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "active", got.Status)
	require.Equal(t, int64(2), got.StateSeq)
	require.Equal(t, 1, got.RefreshCount)
	require.True(t, exp.Equal(*got.ExpiresAt))
	require.True(t, next.Equal(*got.NextRefreshAt))
	require.Equal(t, map[string]any{"region": "eu"}, got.Metadata, "nil metadata keeps the stored value")
	require.False(t, got.UpdatedAt.Before(got.CreatedAt))

	// Older and equal sequence numbers are ignored.
	for _, seq := range []int64{1, 2} {
		applied, err = s.UpdateLinkState(ctx, LinkState{
			TenantID: l.TenantID, LinkID: l.ID, Seq: seq, Status: "failed", LastError: "stale",
		})
		require.NoError(t, err)
		require.False(t, applied, "seq %d", seq)
	}
	unchanged, err := s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, got, unchanged)

	// A newer one applies, replacing metadata and clearing what it omits.
	applied, err = s.UpdateLinkState(ctx, LinkState{
		TenantID: l.TenantID, LinkID: l.ID, Seq: 5, Status: "failed",
		LastError: "refresh: invalid_grant", RefreshCount: 1, Metadata: map[string]any{"k": "v"},
	})
	require.NoError(t, err)
	require.True(t, applied)
	got, err = s.GetLink(ctx, l.TenantID, l.ID)
	require.NoError(t, err)
	require.Equal(t, "failed", got.Status)
	require.Equal(t, "refresh: invalid_grant", got.LastError)
	require.Equal(t, map[string]any{"k": "v"}, got.Metadata)
	require.Nil(t, got.ExpiresAt)
	require.Equal(t, int64(5), got.StateSeq)

	_, err = s.UpdateLinkState(ctx, LinkState{TenantID: l.TenantID, LinkID: "lnk_missing", Seq: 9, Status: "x"})
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.UpdateLinkState(ctx, LinkState{TenantID: l.TenantID, LinkID: l.ID, Seq: 0, Status: "x"})
	require.Error(t, err)
}

// A link created with a request hash keeps it, and a replay gets the
// first link back with it whatever the replay names: the caller compares
// the hashes (and answers 422), not the store.
func TestCreateLinkKeepsRequestHash(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)

	first := newTestLink(DefaultTenantID)
	first.IdempotencyKey = "req-hash"
	first.RequestHash = []byte("salt-and-digest")
	got1, created, err := s.CreateLink(ctx, first)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, first.RequestHash, got1.RequestHash)

	replay := newTestLink(DefaultTenantID)
	replay.IdempotencyKey = "req-hash"
	replay.Provider = "github"
	replay.RequestHash = []byte("another")
	got2, created, err := s.CreateLink(ctx, replay)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, got1.ID, got2.ID)
	require.Equal(t, first.RequestHash, got2.RequestHash)

	got3, err := s.GetLink(ctx, DefaultTenantID, got1.ID)
	require.NoError(t, err)
	require.Equal(t, first.RequestHash, got3.RequestHash)
}
