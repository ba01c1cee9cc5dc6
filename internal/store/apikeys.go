package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// APIKeyPrefix starts every generated key, so that leaked keys are easy
	// to recognise in logs and by secret scanners.
	APIKeyPrefix = "tw_"
	// displayPrefixLen is how much of a key is kept for display: enough to
	// tell keys apart, far too little to guess the rest (a generated key
	// carries 256 random bits).
	displayPrefixLen = 8
	// minBootstrapKeyLen rejects operator-chosen keys too short to resist
	// guessing.
	minBootstrapKeyLen = 16
	// lastUsedGranularity bounds how often a lookup writes last_used_at, so
	// that a busy key does not turn every request into a row update.
	lastUsedGranularity = time.Minute
)

// APIKey describes a caller's key. It never carries the key itself.
type APIKey struct {
	ID         string
	TenantID   string
	Name       string
	Prefix     string
	CreatedAt  time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
	// RateLimit overrides the gateway's requests per second for this key;
	// zero keeps the gateway's default.
	RateLimit float64
}

const apiKeyColumns = `id, tenant_id, name, prefix, created_at, revoked_at, last_used_at, coalesce(rate_limit, 0)`

func scanAPIKey(row pgx.Row, extra ...any) (APIKey, error) {
	var k APIKey
	dest := append([]any{&k.ID, &k.TenantID, &k.Name, &k.Prefix, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt, &k.RateLimit}, extra...)
	if err := row.Scan(dest...); err != nil {
		return APIKey{}, err
	}
	utc(&k.CreatedAt)
	utcPtr(&k.RevokedAt, &k.LastUsedAt)
	return k, nil
}

func hashAPIKey(plaintext string) []byte {
	sum := sha256.Sum256([]byte(plaintext))
	return sum[:]
}

func displayPrefix(plaintext string) string {
	if len(plaintext) <= displayPrefixLen {
		return ""
	}
	return plaintext[:displayPrefixLen]
}

// CreateAPIKey generates a key for the tenant and stores its hash. The
// returned key is the only copy: show it once.
func (s *Store) CreateAPIKey(ctx context.Context, tenantID, name string) (string, APIKey, error) {
	var b [32]byte
	// crypto/rand.Read does not fail since Go 1.24 (it aborts instead).
	_, _ = rand.Read(b[:])
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	k, err := s.insertAPIKey(ctx, tenantID, name, key)
	if err != nil {
		return "", APIKey{}, fmt.Errorf("store: create api key: %w", err)
	}
	return key, k, nil
}

// SetAPIKeyRateLimit sets a key's own request rate (per second); zero
// returns it to the gateway's default.
func (s *Store) SetAPIKeyRateLimit(ctx context.Context, tenantID, keyID string, perSecond float64) error {
	var limit any
	if perSecond > 0 {
		limit = perSecond
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET rate_limit = $3 WHERE tenant_id = $1 AND id = $2`, tenantID, keyID, limit)
	if err != nil {
		return fmt.Errorf("store: set api key rate limit: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set api key rate limit: key %s: %w", keyID, ErrNotFound)
	}
	return nil
}

// InsertAPIKeyHash registers an operator-chosen key (the bootstrap key from
// configuration). It is idempotent on the key: registering the same key
// again returns the existing row, and a key revoked earlier stays revoked,
// so a restart cannot resurrect it.
func (s *Store) InsertAPIKeyHash(ctx context.Context, tenantID, name, plaintext string) (APIKey, error) {
	if len(plaintext) < minBootstrapKeyLen {
		return APIKey{}, fmt.Errorf("store: insert api key: key must be at least %d characters", minBootstrapKeyLen)
	}
	k, err := s.insertAPIKey(ctx, tenantID, name, plaintext)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, fmt.Errorf("store: insert api key: %w", err)
	}
	k, err = scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = $1`, hashAPIKey(plaintext)))
	if err != nil {
		return APIKey{}, fmt.Errorf("store: insert api key: read existing: %w", err)
	}
	if k.TenantID != tenantID {
		return APIKey{}, errors.New("store: insert api key: key is already registered to another tenant")
	}
	return k, nil
}

// insertAPIKey returns pgx.ErrNoRows when the key is already registered.
func (s *Store) insertAPIKey(ctx context.Context, tenantID, name, plaintext string) (APIKey, error) {
	if tenantID == "" {
		return APIKey{}, errors.New("empty tenant id")
	}
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `
		INSERT INTO api_keys (id, tenant_id, name, prefix, hash)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (hash) DO NOTHING
		RETURNING `+apiKeyColumns,
		newID("key_"), tenantID, name, displayPrefix(plaintext), hashAPIKey(plaintext),
	))
	if isForeignKeyViolation(err, "") {
		return APIKey{}, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	return k, err
}

// LookupAPIKey authenticates a presented key. Unknown and revoked keys both
// yield ErrNotFound, so a caller learns nothing about which it was.
func (s *Store) LookupAPIKey(ctx context.Context, plaintext string) (APIKey, error) {
	if plaintext == "" {
		return APIKey{}, fmt.Errorf("store: lookup api key: %w", ErrNotFound)
	}
	hash := hashAPIKey(plaintext)
	// The touch runs in the same statement as the read; the select sees the
	// row as it was before, which is what the caller wants to display.
	var stored []byte
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `
		WITH touch AS (
			UPDATE api_keys SET last_used_at = now()
			WHERE hash = $1
			  AND revoked_at IS NULL
			  AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)
		)
		SELECT `+apiKeyColumns+`, hash FROM api_keys WHERE hash = $1`,
		hash, lastUsedGranularity,
	), &stored)
	if err != nil {
		return APIKey{}, fmt.Errorf("store: lookup api key: %w", noRows(err))
	}
	// The index lookup already matched the hash; comparing again in
	// constant time keeps the decision itself free of timing differences.
	if subtle.ConstantTimeCompare(stored, hash) != 1 || k.RevokedAt != nil {
		return APIKey{}, fmt.Errorf("store: lookup api key: %w", ErrNotFound)
	}
	return k, nil
}

// ListAPIKeys returns the tenant's keys, revoked ones included, oldest
// first.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+apiKeyColumns+` FROM api_keys
		WHERE tenant_id = $1
		ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) { return scanAPIKey(row) })
	if err != nil {
		return nil, fmt.Errorf("store: list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes the tenant's key. Revoking a revoked key is a no-op
// that keeps the first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, tenantID, id string) (APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `
		UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
		WHERE tenant_id = $1 AND id = $2
		RETURNING `+apiKeyColumns,
		tenantID, id,
	))
	if err != nil {
		return APIKey{}, fmt.Errorf("store: revoke api key %q: %w", id, noRows(err))
	}
	return k, nil
}
