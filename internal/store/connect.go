package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors of connect sessions, for a page that tells the end-user what
// happened rather than a bare "not found".
var (
	// ErrSessionUsed: the session was already spent on a choice.
	ErrSessionUsed = errors.New("store: connect session already used")
	// ErrSessionExpired: the session outlived its expiry unused.
	ErrSessionExpired = errors.New("store: connect session expired")
)

// minSessionTokenLen rejects tokens too short to be unguessable: the token
// is all that stands between a browser and a tenant's connect page.
const minSessionTokenLen = 32

// ConnectSession is a short-lived, single-use invitation for one end-user
// to connect an account through the gateway's connect page. The token
// that names it is not part of it: only its hash is stored.
type ConnectSession struct {
	// ID is the session's public name, for logs and the API.
	ID        string
	TenantID  string
	UserID    string
	Providers []string
	ReturnURL string
	// LinkID is set for a reconnect: the session re-authorizes that link.
	LinkID string
	// Scopes are a new link's scopes, or for a reconnect those to add.
	Scopes    []string
	ExpiresAt time.Time
	UsedAt    *time.Time
	CreatedAt time.Time
}

// NewConnectSessionID returns a fresh session ID ("cs_...").
func NewConnectSessionID() string { return newID("cs_") }

const connectColumns = `id, tenant_id, user_id, providers, return_url, link_id, scopes, expires_at, used_at, created_at`

func scanConnectSession(row pgx.Row) (ConnectSession, error) {
	var (
		cs        ConnectSession
		returnURL *string
		linkID    *string
	)
	if err := row.Scan(&cs.ID, &cs.TenantID, &cs.UserID, &cs.Providers, &returnURL, &linkID, &cs.Scopes,
		&cs.ExpiresAt, &cs.UsedAt, &cs.CreatedAt); err != nil {
		return ConnectSession{}, err
	}
	utc(&cs.ExpiresAt, &cs.CreatedAt)
	utcPtr(&cs.UsedAt)
	cs.ReturnURL = derefString(returnURL)
	cs.LinkID = derefString(linkID)
	return cs, nil
}

// CreateConnectSession stores cs under the hash of token, generating its
// ID when empty, and returns it as stored. A link_id that does not exist
// in cs.TenantID, or an unknown tenant, yields ErrNotFound.
func (s *Store) CreateConnectSession(ctx context.Context, token string, cs ConnectSession) (ConnectSession, error) {
	switch {
	case len(token) < minSessionTokenLen:
		return ConnectSession{}, fmt.Errorf("store: create connect session: token must be at least %d characters", minSessionTokenLen)
	case cs.TenantID == "" || cs.UserID == "":
		return ConnectSession{}, errors.New("store: create connect session: tenant id and user id are required")
	case len(cs.Providers) == 0:
		return ConnectSession{}, errors.New("store: create connect session: at least one provider is required")
	case cs.ExpiresAt.IsZero():
		return ConnectSession{}, errors.New("store: create connect session: expiry is required")
	}
	if cs.ID == "" {
		cs.ID = NewConnectSessionID()
	}
	if cs.Scopes == nil {
		cs.Scopes = []string{}
	}
	out, err := scanConnectSession(s.pool.QueryRow(ctx, `
		INSERT INTO connect_sessions (hash, id, tenant_id, user_id, providers, return_url, link_id, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING `+connectColumns,
		hashState(token), cs.ID, cs.TenantID, cs.UserID, cs.Providers, nullString(cs.ReturnURL), nullString(cs.LinkID),
		cs.Scopes, cs.ExpiresAt,
	))
	if isForeignKeyViolation(err, "") {
		return ConnectSession{}, fmt.Errorf("store: create connect session: tenant %q or link %q: %w", cs.TenantID, cs.LinkID, ErrNotFound)
	}
	if err != nil {
		return ConnectSession{}, fmt.Errorf("store: create connect session: %w", err)
	}
	return out, nil
}

// GetConnectSession returns the session named by token if it can still be
// used at now: unknown yields ErrNotFound, spent ErrSessionUsed, past its
// expiry ErrSessionExpired. Reading never spends it.
func (s *Store) GetConnectSession(ctx context.Context, token string, now time.Time) (ConnectSession, error) {
	cs, err := scanConnectSession(s.pool.QueryRow(ctx,
		`SELECT `+connectColumns+` FROM connect_sessions WHERE hash = $1`, hashState(token)))
	if err != nil {
		return ConnectSession{}, fmt.Errorf("store: connect session: %w", noRows(err))
	}
	if err := sessionUsable(cs, now); err != nil {
		return ConnectSession{}, fmt.Errorf("store: connect session %s: %w", cs.ID, err)
	}
	return cs, nil
}

// ConsumeConnectSession spends the session named by token and returns it.
// It succeeds at most once per session, and only before its expiry; the
// errors are GetConnectSession's.
func (s *Store) ConsumeConnectSession(ctx context.Context, token string, now time.Time) (ConnectSession, error) {
	// The conditional update is the single-use guarantee: of two
	// concurrent submissions, only one matches used_at IS NULL.
	cs, err := scanConnectSession(s.pool.QueryRow(ctx, `
		UPDATE connect_sessions SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
		RETURNING `+connectColumns,
		hashState(token), now,
	))
	if err == nil {
		return cs, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return ConnectSession{}, fmt.Errorf("store: consume connect session: %w", err)
	}
	// Nothing matched; say why.
	if _, err := s.GetConnectSession(ctx, token, now); err != nil {
		return ConnectSession{}, fmt.Errorf("store: consume connect session: %w", err)
	}
	// Usable now but not a moment ago cannot happen; a concurrent writer
	// would have to un-spend it.
	return ConnectSession{}, fmt.Errorf("store: consume connect session: %w", ErrSessionUsed)
}

// sessionUsable says why cs cannot be used at now, nil if it can. Used beats
// expired: the end-user learns the link was already followed.
func sessionUsable(cs ConnectSession, now time.Time) error {
	switch {
	case cs.UsedAt != nil:
		return ErrSessionUsed
	case !cs.ExpiresAt.After(now):
		return ErrSessionExpired
	}
	return nil
}

// PurgeConnectSessions deletes sessions that expired before the given
// time and reports how many.
func (s *Store) PurgeConnectSessions(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM connect_sessions WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("store: purge connect sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
