package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// minStateLen rejects state values too short to be unguessable; the state
// is the only thing binding a callback to the link that started it.
const minStateLen = 16

// OAuthState is what an authorization redirect remembers until its
// callback. The state value itself is not part of it: only its hash is
// stored.
type OAuthState struct {
	LinkID    string
	TenantID  string
	ExpiresAt time.Time
	UsedAt    *time.Time
	ReturnURL string
	CreatedAt time.Time
	// BrowserBound: the state rides in the redirect URI's path and only
	// ConsumeBoundOAuthState, with the cookie StartOAuthState bound,
	// may spend it.
	BrowserBound bool
	// AuthURL is the provider's consent URL with a placeholder where the
	// state goes (browser-bound states only); it holds no secret.
	AuthURL string
	// StartedAt is when StartOAuthState bound a browser.
	StartedAt *time.Time
	// Nonce is the OpenID Connect nonce the authorization request sent,
	// for the exchange to check the ID token against. Not a secret (it
	// rides in the authorization URL), but kept out of logs all the same.
	Nonce string
}

const oauthStateColumns = `link_id, tenant_id, expires_at, used_at, return_url, created_at, browser_bound, auth_url, started_at, nonce`

func scanOAuthState(row pgx.Row) (OAuthState, error) {
	var (
		st        OAuthState
		returnURL *string
		authURL   *string
		nonce     *string
	)
	if err := row.Scan(&st.LinkID, &st.TenantID, &st.ExpiresAt, &st.UsedAt, &returnURL, &st.CreatedAt,
		&st.BrowserBound, &authURL, &st.StartedAt, &nonce); err != nil {
		return OAuthState{}, err
	}
	utc(&st.ExpiresAt, &st.CreatedAt)
	utcPtr(&st.UsedAt)
	utcPtr(&st.StartedAt)
	st.ReturnURL = derefString(returnURL)
	st.AuthURL = derefString(authURL)
	st.Nonce = derefString(nonce)
	return st, nil
}

// Errors of browser-bound states.
var (
	// ErrStateStarted: the start page of a browser-bound state was
	// already opened (by this browser or another).
	ErrStateStarted = errors.New("store: oauth state already started in a browser")
	// ErrStateBrowser: the callback came without the cookie of the
	// browser that started the flow.
	ErrStateBrowser = errors.New("store: oauth state bound to another browser")
)

func hashState(state string) []byte {
	sum := sha256.Sum256([]byte(state))
	return sum[:]
}

// PutOAuthState remembers st under the hash of state until st.ExpiresAt. A
// link that does not exist in st.TenantID yields ErrNotFound.
func (s *Store) PutOAuthState(ctx context.Context, state string, st OAuthState) error {
	switch {
	case len(state) < minStateLen:
		return fmt.Errorf("store: put oauth state: state must be at least %d characters", minStateLen)
	case st.TenantID == "" || st.LinkID == "":
		return errors.New("store: put oauth state: tenant id and link id are required")
	case st.ExpiresAt.IsZero():
		return errors.New("store: put oauth state: expiry is required")
	case st.BrowserBound && st.AuthURL == "":
		return errors.New("store: put oauth state: a browser-bound state needs its authorization URL")
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO oauth_states (hash, link_id, tenant_id, expires_at, return_url, browser_bound, auth_url, nonce)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		hashState(state), st.LinkID, st.TenantID, st.ExpiresAt, nullString(st.ReturnURL), st.BrowserBound, nullString(st.AuthURL),
		nullString(st.Nonce),
	)
	if isForeignKeyViolation(err, "oauth_states_link_fkey") {
		return fmt.Errorf("store: put oauth state: link %q: %w", st.LinkID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: put oauth state: %w", err)
	}
	return nil
}

// ConsumeOAuthState marks the state used and returns what it remembered.
// It succeeds at most once per state; afterwards it yields ErrStateUsed.
// A state past its expiry at now yields ErrStateExpired, an unknown one
// ErrNotFound. A browser-bound state is unknown here: only
// ConsumeBoundOAuthState spends it.
func (s *Store) ConsumeOAuthState(ctx context.Context, state string, now time.Time) (OAuthState, error) {
	return s.consume(ctx, state, nil, now)
}

// ConsumeBoundOAuthState is ConsumeOAuthState for a browser-bound state:
// binding must be the cookie StartOAuthState bound, or it yields
// ErrStateBrowser and the state stays unspent. A state that is not
// browser-bound is unknown here.
func (s *Store) ConsumeBoundOAuthState(ctx context.Context, state, binding string, now time.Time) (OAuthState, error) {
	return s.consume(ctx, state, hashState(binding), now)
}

// consume spends state; binding nil means a state that is not bound.
func (s *Store) consume(ctx context.Context, state string, binding []byte, now time.Time) (OAuthState, error) {
	hash := hashState(state)
	bound := binding != nil
	// The conditional update is the single-use guarantee: of two concurrent
	// callbacks, only one matches used_at IS NULL.
	st, err := scanOAuthState(s.pool.QueryRow(ctx, `
		UPDATE oauth_states SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
		  AND browser_bound = $3 AND (NOT $3 OR binding_hash = $4)
		RETURNING `+oauthStateColumns,
		hash, now, bound, binding,
	))
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", err)
	}
	// Nothing matched; find out why, for an error the callback can act on.
	st, err = s.diagnose(ctx, hash, bound)
	switch {
	case err != nil:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", err)
	case st.UsedAt != nil:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrStateUsed)
	case !st.ExpiresAt.After(now):
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrStateExpired)
	default:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrStateBrowser)
	}
}

// diagnose reads the state under hash for an error message; a state of
// the other kind (bound or not) is ErrNotFound.
func (s *Store) diagnose(ctx context.Context, hash []byte, bound bool) (OAuthState, error) {
	st, err := scanOAuthState(s.pool.QueryRow(ctx,
		`SELECT `+oauthStateColumns+` FROM oauth_states WHERE hash = $1`, hash))
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && st.BrowserBound != bound):
		return OAuthState{}, ErrNotFound
	case err != nil:
		return OAuthState{}, err
	}
	return st, nil
}

// StartOAuthState binds a browser-bound state to the browser whose
// cookie is binding, once: a second start yields ErrStateStarted. It
// returns the state's row, whose AuthURL the start page redirects to.
// Used, expired and unknown states yield ErrStateUsed, ErrStateExpired
// and ErrNotFound, as ConsumeOAuthState's do.
func (s *Store) StartOAuthState(ctx context.Context, state, binding string, now time.Time) (OAuthState, error) {
	if len(binding) < minStateLen {
		return OAuthState{}, fmt.Errorf("store: start oauth state: binding must be at least %d characters", minStateLen)
	}
	hash := hashState(state)
	st, err := scanOAuthState(s.pool.QueryRow(ctx, `
		UPDATE oauth_states SET started_at = $2, binding_hash = $3
		WHERE hash = $1 AND browser_bound AND started_at IS NULL AND used_at IS NULL AND expires_at > $2
		RETURNING `+oauthStateColumns,
		hash, now, hashState(binding),
	))
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return OAuthState{}, fmt.Errorf("store: start oauth state: %w", err)
	}
	st, err = s.diagnose(ctx, hash, true)
	switch {
	case err != nil:
		return OAuthState{}, fmt.Errorf("store: start oauth state: %w", err)
	case st.UsedAt != nil:
		return OAuthState{}, fmt.Errorf("store: start oauth state: %w", ErrStateUsed)
	case !st.ExpiresAt.After(now):
		return OAuthState{}, fmt.Errorf("store: start oauth state: %w", ErrStateExpired)
	default:
		return OAuthState{}, fmt.Errorf("store: start oauth state: %w", ErrStateStarted)
	}
}

// PurgeOAuthStates deletes states that expired before the given time and
// reports how many.
func (s *Store) PurgeOAuthStates(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM oauth_states WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("store: purge oauth states: %w", err)
	}
	return tag.RowsAffected(), nil
}
