package activities_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// rotatingProvider rotates refresh tokens and rejects a spent one, as
// providers do; strict ones (oidc-provider, Auth0 without a reuse
// interval) also revoke the whole grant on such a replay.
type rotatingProvider struct {
	mu      sync.Mutex
	strict  bool
	n       int
	spent   map[string]bool
	live    map[string]bool // refresh and access tokens of the grant
	revoked bool
	// beforeRefresh runs once, before the next refresh is served.
	beforeRefresh func()
}

func newRotatingProvider(strict bool) *rotatingProvider {
	return &rotatingProvider{strict: strict, spent: map[string]bool{}, live: map[string]bool{}}
}

func (p *rotatingProvider) issue() *providers.Token {
	p.n++
	t := &providers.Token{AccessToken: fmt.Sprintf("access-secret-%d", p.n), RefreshToken: fmt.Sprintf("refresh-secret-%d", p.n),
		TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}
	p.live[t.AccessToken], p.live[t.RefreshToken] = true, true
	return t
}

func (p *rotatingProvider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issue(), nil
}

func (p *rotatingProvider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	if f := p.beforeRefresh; f != nil {
		p.beforeRefresh = nil
		f()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	invalid := &providers.Error{Class: providers.InvalidGrant, Op: "refresh", Status: 400, Code: "invalid_grant"}
	switch {
	case p.revoked || !p.live[t.RefreshToken] && !p.spent[t.RefreshToken]:
		return nil, invalid
	case p.spent[t.RefreshToken]:
		if p.strict {
			p.revoked, p.live = true, map[string]bool{}
		}
		return nil, invalid
	}
	p.spent[t.RefreshToken], p.live[t.RefreshToken] = true, false
	return p.issue(), nil
}

// accepts reports whether the provider still honours an access token.
func (p *rotatingProvider) accepts(accessToken string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.revoked && p.live[accessToken]
}

// TestRefreshAfterLosingARaceForTheRefreshToken: another attempt (one
// Temporal gave up on, still running) spends the refresh token this one
// read and stores the rotated one, so this one's request replays a spent
// token. A refresh that answers success must leave a token the provider
// honours; one whose grant the replay revoked must say invalid_grant, so
// the link goes to reauth_required instead of serving a dead token as
// active (adopting the other attempt's token did that).
func TestRefreshAfterLosingARaceForTheRefreshToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		strict bool
	}{
		{"strict reuse detection revokes the grant", true},
		{"a spent refresh token is only rejected", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRotatingProvider(tc.strict)
			f := newFixture(t, p)
			info := f.enroll(t, providers.GrantAuthorizationCode, providers.Grant{})
			ctx := context.Background()
			p.beforeRefresh = func() {
				cur, err := f.sec.ReadToken(ctx, "default", "lnk_a")
				require.NoError(t, err)
				tok, err := p.Refresh(ctx, &cur.Value)
				require.NoError(t, err)
				_, err = f.sec.WriteToken(ctx, "default", "lnk_a", *tok, cur.Version)
				require.NoError(t, err)
			}
			got, err := f.refresh(info.VaultVersion, providers.GrantAuthorizationCode)
			stored, rerr := f.sec.ReadToken(ctx, "default", "lnk_a")
			require.NoError(t, rerr)
			if tc.strict {
				var appErr *temporal.ApplicationError
				require.True(t, errors.As(err, &appErr), "refresh answered success with a token of a revoked grant (stored version %d)", stored.Version)
				assert.Equal(t, workflows.ErrTypeInvalidGrant, appErr.Type())
				return
			}
			require.NoError(t, err)
			assert.True(t, p.accepts(stored.Value.AccessToken), "the stored token is honoured")
			assert.Equal(t, stored.Version, got.VaultVersion)
			assert.Equal(t, 2, got.Refreshes, "the other attempt's refresh and ours")
		})
	}
}
