package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// DefaultListLimit is the page size when the caller gives none.
	DefaultListLimit = 50
	// MaxListLimit caps page sizes so one request cannot read a tenant whole.
	MaxListLimit = 500
)

// Link is one user–provider grant kept alive by a workflow. The tokens
// themselves are in Vault at VaultPath; nothing here is secret.
type Link struct {
	ID        string
	TenantID  string
	Provider  string
	UserID    string // the caller's reference for its user
	GrantType string
	Scopes    []string
	Status    string
	VaultPath string
	// Metadata holds non-secret provider extras.
	Metadata         map[string]any
	ExpiresAt        *time.Time
	RefreshExpiresAt *time.Time
	NextRefreshAt    *time.Time
	LastError        string
	RefreshCount     int
	// StateSeq is the workflow sequence number of the last state written.
	StateSeq       int64
	IdempotencyKey string
	// RequestHash identifies the request that created the link under
	// IdempotencyKey (the gateway's salted hash; the store only keeps
	// it). Nil for links created without one.
	RequestHash []byte
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const linkColumns = `id, tenant_id, provider, user_id, grant_type, scopes, status, vault_path, metadata,
	expires_at, refresh_expires_at, next_refresh_at, last_error, refresh_count, state_seq,
	idempotency_key, idempotency_request_hash, created_at, updated_at`

func scanLink(row pgx.Row) (Link, error) {
	var (
		l              Link
		lastError      *string
		idempotencyKey *string
	)
	err := row.Scan(&l.ID, &l.TenantID, &l.Provider, &l.UserID, &l.GrantType, &l.Scopes, &l.Status,
		&l.VaultPath, &l.Metadata, &l.ExpiresAt, &l.RefreshExpiresAt, &l.NextRefreshAt, &lastError,
		&l.RefreshCount, &l.StateSeq, &idempotencyKey, &l.RequestHash, &l.CreatedAt, &l.UpdatedAt)
	if err != nil {
		return Link{}, err
	}
	utc(&l.CreatedAt, &l.UpdatedAt)
	utcPtr(&l.ExpiresAt, &l.RefreshExpiresAt, &l.NextRefreshAt)
	l.LastError = derefString(lastError)
	l.IdempotencyKey = derefString(idempotencyKey)
	return l, nil
}

func collectLinks(rows pgx.Rows) ([]Link, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Link, error) { return scanLink(row) })
}

// nonNilMetadata keeps NOT NULL jsonb columns from receiving SQL NULL.
func nonNilMetadata(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// CreateLink inserts l, generating its ID when empty. With an
// IdempotencyKey, a repeated call returns the link the first call created
// and created=false; when that link has no RequestHash, a repeat that
// names a different provider, user or grant type fails with
// ErrIdempotencyConflict (with one, the caller compares the hashes). An unknown tenant yields
// ErrNotFound.
func (s *Store) CreateLink(ctx context.Context, l Link) (Link, bool, error) {
	return createLink(ctx, s.pool, l)
}

// CreateLinkTx is CreateLink inside the caller's transaction.
func (s *Store) CreateLinkTx(ctx context.Context, tx pgx.Tx, l Link) (Link, bool, error) {
	return createLink(ctx, tx, l)
}

func createLink(ctx context.Context, db DBTX, l Link) (Link, bool, error) {
	switch {
	case l.TenantID == "":
		return Link{}, false, errors.New("store: create link: empty tenant id")
	case l.Provider == "", l.UserID == "", l.GrantType == "", l.Status == "", l.VaultPath == "":
		return Link{}, false, errors.New("store: create link: provider, user id, grant type, status and vault path are required")
	}
	if l.ID == "" {
		l.ID = NewLinkID()
	}
	if l.Scopes == nil {
		l.Scopes = []string{}
	}
	created, err := scanLink(db.QueryRow(ctx, `
		INSERT INTO links (id, tenant_id, provider, user_id, grant_type, scopes, status, vault_path,
			metadata, expires_at, refresh_expires_at, next_refresh_at, last_error, refresh_count,
			state_seq, idempotency_key, idempotency_request_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
		ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
		RETURNING `+linkColumns,
		l.ID, l.TenantID, l.Provider, l.UserID, l.GrantType, l.Scopes, l.Status, l.VaultPath,
		nonNilMetadata(l.Metadata), l.ExpiresAt, l.RefreshExpiresAt, l.NextRefreshAt,
		nullString(l.LastError), l.RefreshCount, l.StateSeq, nullString(l.IdempotencyKey), l.RequestHash,
	))
	switch {
	case err == nil:
		return created, true, nil
	case isForeignKeyViolation(err, ""):
		return Link{}, false, fmt.Errorf("store: create link: tenant %q: %w", l.TenantID, ErrNotFound)
	case !errors.Is(err, pgx.ErrNoRows):
		return Link{}, false, fmt.Errorf("store: create link: %w", err)
	}
	// DO NOTHING waited for any concurrent inserter to finish, and this new
	// statement sees what it committed.
	existing, err := scanLink(db.QueryRow(ctx, `
		SELECT `+linkColumns+` FROM links WHERE tenant_id = $1 AND idempotency_key = $2`,
		l.TenantID, l.IdempotencyKey,
	))
	if err != nil {
		return Link{}, false, fmt.Errorf("store: create link: read existing: %w", err)
	}
	// A link with a request hash is returned as it is: the caller, which
	// made the hash, compares it. One without (created before hashes
	// were kept) is compared on what the row holds.
	if existing.RequestHash == nil &&
		(existing.Provider != l.Provider || existing.UserID != l.UserID || existing.GrantType != l.GrantType) {
		return Link{}, false, fmt.Errorf("store: create link: %w", ErrIdempotencyConflict)
	}
	return existing, false, nil
}

// GetLink returns the tenant's link, or ErrNotFound when it does not exist
// or belongs to another tenant.
func (s *Store) GetLink(ctx context.Context, tenantID, id string) (Link, error) {
	l, err := scanLink(s.pool.QueryRow(ctx,
		`SELECT `+linkColumns+` FROM links WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if err != nil {
		return Link{}, fmt.Errorf("store: get link %q: %w", id, noRows(err))
	}
	return l, nil
}

// ListFilter narrows ListLinks. Empty fields do not filter.
type ListFilter struct {
	Provider string
	Status   string
	UserID   string
	// Cursor is the nextCursor of a previous page; empty for the first.
	Cursor string
	// Limit is the page size: DefaultListLimit when <= 0, at most
	// MaxListLimit.
	Limit int
}

// cursor is a keyset position: the (created_at, id) of the last row seen.
type cursor struct {
	T time.Time `json:"t"`
	I string    `json:"i"`
}

func encodeCursor(t time.Time, id string) string {
	b, _ := json.Marshal(cursor{T: t.UTC(), I: id}) // cannot fail for these types
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.I == "" || c.T.IsZero() {
		return cursor{}, ErrBadCursor
	}
	return c, nil
}

func pageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultListLimit
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}

// ListLinks returns one page of the tenant's links, oldest first, and the
// cursor of the next page ("" on the last). A cursor this package did not
// produce yields ErrBadCursor.
func (s *Store) ListLinks(ctx context.Context, tenantID string, f ListFilter) ([]Link, string, error) {
	limit := pageLimit(f.Limit)
	// The WHERE clause is assembled from fixed fragments rather than
	// "$n IS NULL OR col = $n", so each shape gets a plan that can use its
	// (tenant_id, col, created_at, id) index.
	where := []string{"tenant_id = $1"}
	args := []any{tenantID}
	add := func(column, value string) {
		if value != "" {
			args = append(args, value)
			where = append(where, column+" = $"+strconv.Itoa(len(args)))
		}
	}
	add("provider", f.Provider)
	add("status", f.Status)
	add("user_id", f.UserID)
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list links: %w", err)
		}
		args = append(args, c.T, c.I)
		where = append(where, fmt.Sprintf("(created_at, id) > ($%d, $%d)", len(args)-1, len(args)))
	}
	// One extra row tells whether another page exists.
	args = append(args, limit+1)
	query := `SELECT ` + linkColumns + ` FROM links
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY created_at, id
		LIMIT $` + strconv.Itoa(len(args))

	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list links: %w", err)
	}
	links, err := collectLinks(rows)
	if err != nil {
		return nil, "", fmt.Errorf("store: list links: %w", err)
	}
	if len(links) <= limit {
		return links, "", nil
	}
	links = links[:limit]
	last := links[limit-1]
	return links, encodeCursor(last.CreatedAt, last.ID), nil
}

// LinkState is a workflow's view of a link after a transition. It replaces
// the stored state wholesale, except that a nil Metadata or Scopes keeps
// the stored value.
type LinkState struct {
	TenantID string
	LinkID   string
	// Seq must exceed the stored sequence for the write to apply; the
	// workflow increments it with every state it reports.
	Seq              int64
	Status           string
	ExpiresAt        *time.Time
	RefreshExpiresAt *time.Time
	NextRefreshAt    *time.Time
	LastError        string
	RefreshCount     int
	Metadata         map[string]any
	// Scopes are the scopes the provider granted with the link's current
	// token; nil keeps the stored ones.
	Scopes []string
}

// UpdateLinkState writes st unless the stored state is as new or newer
// (stored state_seq >= st.Seq), in which case it reports applied=false: a
// retried or delayed activity must not roll a link back. A missing link, or
// one of another tenant, yields ErrNotFound.
func (s *Store) UpdateLinkState(ctx context.Context, st LinkState) (bool, error) {
	return updateLinkState(ctx, s.pool, st)
}

// UpdateLinkStateTx is UpdateLinkState inside the caller's transaction.
func (s *Store) UpdateLinkStateTx(ctx context.Context, tx pgx.Tx, st LinkState) (bool, error) {
	return updateLinkState(ctx, tx, st)
}

func updateLinkState(ctx context.Context, db DBTX, st LinkState) (bool, error) {
	if st.Seq <= 0 {
		return false, errors.New("store: update link state: seq must be positive")
	}
	if st.Status == "" {
		return false, errors.New("store: update link state: empty status")
	}
	var metadata any // untyped nil reaches SQL as NULL, keeping the stored value
	if st.Metadata != nil {
		metadata = st.Metadata
	}
	tag, err := db.Exec(ctx, `
		UPDATE links SET
			status = $4,
			expires_at = $5,
			refresh_expires_at = $6,
			next_refresh_at = $7,
			last_error = $8,
			refresh_count = $9,
			metadata = coalesce($10::jsonb, metadata),
			scopes = coalesce($11::text[], scopes),
			state_seq = $3,
			updated_at = now()
		WHERE tenant_id = $1 AND id = $2 AND state_seq < $3`,
		st.TenantID, st.LinkID, st.Seq, st.Status, st.ExpiresAt, st.RefreshExpiresAt,
		st.NextRefreshAt, nullString(st.LastError), st.RefreshCount, metadata, st.Scopes,
	)
	if err != nil {
		return false, fmt.Errorf("store: update link state %q: %w", st.LinkID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var exists bool
	err = db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM links WHERE tenant_id = $1 AND id = $2)`,
		st.TenantID, st.LinkID).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("store: update link state %q: %w", st.LinkID, err)
	}
	if !exists {
		return false, fmt.Errorf("store: update link state %q: %w", st.LinkID, ErrNotFound)
	}
	return false, nil
}

// LinkSubject returns who the tenant's link was enrolled for: the sub
// claim of its verified ID token, "" while none is known. A missing
// link yields ErrNotFound.
func (s *Store) LinkSubject(ctx context.Context, tenantID, id string) (string, error) {
	var sub *string
	err := s.pool.QueryRow(ctx, `SELECT subject FROM links WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&sub)
	if err != nil {
		return "", fmt.Errorf("store: link subject %q: %w", id, noRows(err))
	}
	return derefString(sub), nil
}

// SetLinkSubject records who the link is enrolled for from now on. It is
// idempotent; a missing link yields ErrNotFound.
func (s *Store) SetLinkSubject(ctx context.Context, tenantID, id, subject string) error {
	if subject == "" {
		return errors.New("store: set link subject: empty subject")
	}
	tag, err := s.pool.Exec(ctx, `UPDATE links SET subject = $3 WHERE tenant_id = $1 AND id = $2`, tenantID, id, subject)
	if err != nil {
		return fmt.Errorf("store: set link subject %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set link subject %q: %w", id, ErrNotFound)
	}
	return nil
}
