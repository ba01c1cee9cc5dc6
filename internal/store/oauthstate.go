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
}

const oauthStateColumns = `link_id, tenant_id, expires_at, used_at, return_url, created_at`

func scanOAuthState(row pgx.Row) (OAuthState, error) {
	var (
		st        OAuthState
		returnURL *string
	)
	if err := row.Scan(&st.LinkID, &st.TenantID, &st.ExpiresAt, &st.UsedAt, &returnURL, &st.CreatedAt); err != nil {
		return OAuthState{}, err
	}
	utc(&st.ExpiresAt, &st.CreatedAt)
	utcPtr(&st.UsedAt)
	st.ReturnURL = derefString(returnURL)
	return st, nil
}

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
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO oauth_states (hash, link_id, tenant_id, expires_at, return_url)
		VALUES ($1, $2, $3, $4, $5)`,
		hashState(state), st.LinkID, st.TenantID, st.ExpiresAt, nullString(st.ReturnURL),
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
// ErrNotFound.
func (s *Store) ConsumeOAuthState(ctx context.Context, state string, now time.Time) (OAuthState, error) {
	hash := hashState(state)
	// The conditional update is the single-use guarantee: of two concurrent
	// callbacks, only one matches used_at IS NULL.
	st, err := scanOAuthState(s.pool.QueryRow(ctx, `
		UPDATE oauth_states SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
		RETURNING `+oauthStateColumns,
		hash, now,
	))
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", err)
	}
	// Nothing matched; find out why, for an error the callback can act on.
	st, err = scanOAuthState(s.pool.QueryRow(ctx,
		`SELECT `+oauthStateColumns+` FROM oauth_states WHERE hash = $1`, hash))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrNotFound)
	case err != nil:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", err)
	case st.UsedAt != nil:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrStateUsed)
	default:
		return OAuthState{}, fmt.Errorf("store: consume oauth state: %w", ErrStateExpired)
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
