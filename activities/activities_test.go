package activities_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// fakeProvider issues numbered tokens and can be told to fail.
type fakeProvider struct {
	mu         sync.Mutex
	n          int
	expiresIn  time.Duration // 0: the reply has no expires_in
	rotate     bool
	refreshErr error
	exchanges  int
	refreshes  int
	revoked    []string
}

func (f *fakeProvider) token() *providers.Token {
	f.n++
	t := &providers.Token{AccessToken: fmt.Sprintf("access-secret-%d", f.n), TokenType: "Bearer",
		RefreshToken: fmt.Sprintf("refresh-secret-%d", f.n), Scopes: []string{"read"}}
	if f.expiresIn > 0 {
		t.Expiry = time.Now().Add(f.expiresIn)
	}
	return t
}

func (f *fakeProvider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchanges++
	return f.token(), nil
}

func (f *fakeProvider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	if f.refreshErr != nil {
		return nil, f.refreshErr
	}
	nt := f.token()
	if !f.rotate {
		nt.RefreshToken = "" // the server keeps the old one
	}
	return nt, nil
}

func (f *fakeProvider) Revoke(ctx context.Context, t *providers.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, t.RefreshToken)
	return nil
}

// introspecting adds RFC 7662 introspection to the fake.
type introspecting struct {
	*fakeProvider
	exp time.Time
}

func (p introspecting) Introspect(ctx context.Context, token string) (*providers.Introspection, error) {
	return &providers.Introspection{Active: true, Expiry: p.exp}, nil
}

type catalog map[string]providers.Provider

func (c catalog) Get(name string) (providers.Provider, providers.Entry, bool) {
	p, ok := c[name]
	return p, providers.Entry{Name: name, Schedule: providers.Schedule{DefaultLifetime: 20 * time.Minute}}, ok
}

type fixture struct {
	acts *activities.Activities
	sec  *secrets.Store
	st   *store.Store
	env  *testsuite.TestActivityEnvironment
}

func newFixture(t *testing.T, p providers.Provider) *fixture {
	t.Helper()
	vc, prefix := testenv.Vault(t)
	sec := secrets.New(vc, testenv.StackInfo(t).VaultMount, prefix)
	pool, _ := testenv.Postgres(t)
	require.NoError(t, store.Migrate(context.Background(), pool))
	st := store.New(pool)
	acts := &activities.Activities{Providers: catalog{"fake": p}, Secrets: sec, Store: st}
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return &fixture{acts: acts, sec: sec, st: st, env: env}
}

func ref(grant string) workflows.LinkRef {
	return workflows.LinkRef{TenantID: "default", LinkID: "lnk_a", Provider: "fake", GrantType: grant}
}

func (f *fixture) enroll(t *testing.T, grant string, g providers.Grant) workflows.TokenInfo {
	t.Helper()
	g.Type = grant
	_, err := f.sec.WriteGrant(context.Background(), "default", "lnk_a", g, -1)
	require.NoError(t, err)
	v, err := f.env.ExecuteActivity(f.acts.Enroll, workflows.EnrollInput{LinkRef: ref(grant)})
	require.NoError(t, err)
	var info workflows.TokenInfo
	require.NoError(t, v.Get(&info))
	return info
}

func (f *fixture) refresh(known int, grant string) (workflows.TokenInfo, error) {
	v, err := f.env.ExecuteActivity(f.acts.Refresh, workflows.RefreshInput{LinkRef: ref(grant), KnownVersion: known})
	if err != nil {
		return workflows.TokenInfo{}, err
	}
	var info workflows.TokenInfo
	return info, v.Get(&info)
}

func TestEnrollStoresTokenAndDropsSpentCode(t *testing.T) {
	p := &fakeProvider{expiresIn: time.Hour}
	f := newFixture(t, p)
	info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{Code: "code-secret", CodeVerifier: "verifier-secret"})
	assert.Equal(t, "provider", info.ExpirySource)
	assert.WithinDuration(t, time.Now().Add(time.Hour), info.ExpiresAt, 5*time.Second)
	tok, err := f.sec.ReadToken(context.Background(), "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, "access-secret-1", tok.Value.AccessToken)
	assert.Equal(t, info.VaultVersion, tok.Version)
	g, err := f.sec.ReadGrant(context.Background(), "default", "lnk_a")
	require.NoError(t, err)
	assert.Empty(t, g.Value.Code, "a spent code stays in Vault")
	assert.Empty(t, g.Value.CodeVerifier)
}

func TestExpiryWithoutExpiresIn(t *testing.T) {
	t.Run("introspection", func(t *testing.T) {
		exp := time.Now().Add(7 * time.Minute).Truncate(time.Second)
		f := newFixture(t, introspecting{&fakeProvider{}, exp})
		info := f.enroll(t, providers.GrantClientCredentials, providers.Grant{})
		assert.Equal(t, "introspection", info.ExpirySource)
		assert.True(t, info.ExpiresAt.Equal(exp), "expiry %s, want %s", info.ExpiresAt, exp)
	})
	t.Run("catalog default lifetime", func(t *testing.T) {
		f := newFixture(t, &fakeProvider{})
		info := f.enroll(t, providers.GrantClientCredentials, providers.Grant{})
		assert.Equal(t, "default", info.ExpirySource)
		assert.WithinDuration(t, time.Now().Add(20*time.Minute), info.ExpiresAt, 5*time.Second)
	})
}

func TestRefreshRotationAndKeepingTheOldRefreshToken(t *testing.T) {
	p := &fakeProvider{expiresIn: time.Hour, rotate: true}
	f := newFixture(t, p)
	info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})
	next, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	assert.True(t, next.Rotated)
	assert.Equal(t, info.VaultVersion+1, next.VaultVersion)
	tok, _ := f.sec.ReadToken(context.Background(), "default", "lnk_a")
	assert.Equal(t, "refresh-secret-2", tok.Value.RefreshToken, "the rotated refresh token is stored")

	p.rotate = false
	again, err := f.refresh(next.VaultVersion, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	assert.False(t, again.Rotated)
	tok, _ = f.sec.ReadToken(context.Background(), "default", "lnk_a")
	assert.Equal(t, "access-secret-3", tok.Value.AccessToken)
	assert.Equal(t, "refresh-secret-2", tok.Value.RefreshToken, "a reply without a refresh token keeps the old one")
}

func TestRefreshAdoptsANewerStoredToken(t *testing.T) {
	// An earlier attempt stored a token and died before reporting it: the
	// retry must not spend the rotated refresh token again.
	p := &fakeProvider{expiresIn: time.Hour, rotate: true}
	f := newFixture(t, p)
	info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})
	_, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	calls := p.refreshes
	adopted, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode) // the workflow still knows the old version
	require.NoError(t, err)
	assert.Equal(t, calls, p.refreshes, "no provider call")
	assert.Equal(t, info.VaultVersion+1, adopted.VaultVersion)
}

// TestRefreshAdoptsANewerStoredTokenNearExpiry: the stored token an
// earlier attempt left, short of life (a retry after a Temporal outage
// comes late), is refreshed on, and the answer counts both refreshes:
// counting one made the provider see two refreshes where the link counted
// one (the soak caught it).
func TestRefreshAdoptsANewerStoredTokenNearExpiry(t *testing.T) {
	p := &fakeProvider{expiresIn: 10 * time.Second, rotate: true}
	f := newFixture(t, p)
	info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})
	_, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	calls := p.refreshes
	f.acts.Now = func() time.Time { return time.Now().Add(8 * time.Second) }
	got, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	require.NoError(t, err)
	assert.Equal(t, calls+1, p.refreshes, "refreshed on from the stored token")
	assert.Equal(t, info.VaultVersion+2, got.VaultVersion)
	assert.Equal(t, 2, got.Refreshes, "both refreshes counted")
}

func TestInvalidGrantClasses(t *testing.T) {
	invalid := &providers.Error{Class: providers.InvalidGrant, Op: "refresh", Status: 400, Code: "invalid_grant", Description: "Token is not active"}
	t.Run("authorization code needs the end-user", func(t *testing.T) {
		p := &fakeProvider{expiresIn: time.Hour, refreshErr: invalid}
		f := newFixture(t, p)
		info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})
		_, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "%v", err)
		assert.Equal(t, workflows.ErrTypeInvalidGrant, appErr.Type())
		assert.True(t, appErr.NonRetryable())
		assert.Contains(t, appErr.Message(), "Token is not active")
	})
	t.Run("password grant logs in again", func(t *testing.T) {
		p := &fakeProvider{expiresIn: time.Hour, refreshErr: invalid}
		f := newFixture(t, p)
		info := f.enroll(t, providers.GrantPassword, providers.Grant{Username: "u", Password: "password-secret"})
		got, err := f.refresh(info.VaultVersion, providers.GrantPassword)
		require.NoError(t, err)
		assert.True(t, got.Reenrolled)
		assert.Equal(t, 2, p.exchanges)
	})
	t.Run("client credentials ask again", func(t *testing.T) {
		p := &fakeProvider{expiresIn: time.Hour}
		f := newFixture(t, p)
		info := f.enroll(t, providers.GrantClientCredentials, providers.Grant{})
		// A client-credentials token comes without a refresh token here.
		tok, _ := f.sec.ReadToken(context.Background(), "default", "lnk_a")
		tok.Value.RefreshToken = ""
		v, err := f.sec.WriteToken(context.Background(), "default", "lnk_a", tok.Value, tok.Version)
		require.NoError(t, err)
		_ = info
		got, err := f.refresh(v, providers.GrantClientCredentials)
		require.NoError(t, err)
		assert.False(t, got.Reenrolled)
		assert.Equal(t, 0, p.refreshes)
		assert.Equal(t, 2, p.exchanges)
	})
}

func TestTransientAndRateLimitedErrors(t *testing.T) {
	p := &fakeProvider{expiresIn: time.Hour}
	f := newFixture(t, p)
	info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})

	p.refreshErr = &providers.Error{Class: providers.RateLimited, Op: "refresh", Status: 429, RetryAfter: 42 * time.Second}
	_, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, "RateLimited", appErr.Type())
	assert.False(t, appErr.NonRetryable())
	assert.Equal(t, 42*time.Second, appErr.NextRetryDelay())

	p.refreshErr = &providers.Error{Class: providers.Transient, Op: "refresh", Status: 503}
	_, err = f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
	require.True(t, errors.As(err, &appErr))
	assert.False(t, appErr.NonRetryable())
	assert.Contains(t, appErr.Message(), "503")
	for _, secret := range []string{"access-secret", "refresh-secret"} {
		assert.NotContains(t, err.Error(), secret)
	}
}

func TestRevokeWipesSecretsAndIsIdempotent(t *testing.T) {
	p := &fakeProvider{expiresIn: time.Hour}
	f := newFixture(t, p)
	f.enroll(t, providers.GrantPassword, providers.Grant{Username: "u", Password: "password-secret"})
	for i := 0; i < 2; i++ {
		_, err := f.env.ExecuteActivity(f.acts.Revoke, ref(providers.GrantPassword))
		require.NoError(t, err, "revoke %d", i)
	}
	assert.Equal(t, []string{"refresh-secret-1"}, p.revoked, "revoked at the provider once")
	_, err := f.sec.ReadToken(context.Background(), "default", "lnk_a")
	assert.ErrorIs(t, err, secrets.ErrNotFound)
	_, err = f.sec.ReadGrant(context.Background(), "default", "lnk_a")
	assert.ErrorIs(t, err, secrets.ErrNotFound, "the password is gone too")
}

func TestRecordTransitionIsIdempotentAndNeverRollsBack(t *testing.T) {
	f := newFixture(t, &fakeProvider{})
	ctx := context.Background()
	_, _, err := f.st.CreateLink(ctx, store.Link{ID: "lnk_a", TenantID: "default", Provider: "fake", UserID: "u",
		GrantType: "password", Status: "pending", VaultPath: "x"})
	require.NoError(t, err)
	tr := func(seq int64, to workflows.Status) workflows.Transition {
		return workflows.Transition{LinkRef: ref("password"), EventID: fmt.Sprintf("link/default/lnk_a/%d", seq), Seq: seq,
			Type: "t", To: to, At: time.Now(), State: workflows.State{Status: to, Refreshes: int(seq)}}
	}
	for _, tt := range []workflows.Transition{tr(1, workflows.StatusActive), tr(2, workflows.StatusRefreshing), tr(2, workflows.StatusRefreshing), tr(3, workflows.StatusActive), tr(2, workflows.StatusRefreshing)} {
		_, err := f.env.ExecuteActivity(f.acts.RecordTransition, tt)
		require.NoError(t, err)
	}
	events, _, err := f.st.ListEvents(ctx, "default", "lnk_a", "", 100)
	require.NoError(t, err)
	assert.Len(t, events, 3, "retries do not duplicate events")
	l, err := f.st.GetLink(ctx, "default", "lnk_a")
	require.NoError(t, err)
	assert.Equal(t, "active", l.Status, "a late retry does not roll the link back")
	assert.Equal(t, 3, l.RefreshCount)
	var raw strings.Builder
	for _, e := range events {
		fmt.Fprint(&raw, e)
	}
	assert.NotContains(t, raw.String(), "secret")
}
