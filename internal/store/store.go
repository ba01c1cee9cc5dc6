// Package store keeps link metadata, API keys, OAuth states and the audit
// trail in PostgreSQL. It never holds token material: that lives in Vault,
// and a link only records the Vault path that holds its tokens.
//
// Table names are unqualified so that the connection's search_path picks the
// schema; tests run each in a schema of its own.
package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrNotFound is returned when a row does not exist or belongs to
	// another tenant; callers cannot tell the two apart, by design.
	ErrNotFound = errors.New("store: not found")
	// ErrBadCursor is returned for a pagination cursor this package did not
	// produce.
	ErrBadCursor = errors.New("store: invalid cursor")
	// ErrStateUsed is returned when an OAuth state was already consumed.
	ErrStateUsed = errors.New("store: oauth state already used")
	// ErrStateExpired is returned when an OAuth state outlived its expiry.
	ErrStateExpired = errors.New("store: oauth state expired")
	// ErrIdempotencyConflict is returned when an idempotency key is reused
	// for a link that differs in provider, user or grant type.
	ErrIdempotencyConflict = errors.New("store: idempotency key reused with different parameters")
)

// DBTX is what queries need; *pgxpool.Pool, *pgx.Conn and pgx.Tx all
// satisfy it, which is what lets the Tx twins share code with the rest.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is the PostgreSQL-backed store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store using pool. Run Migrate before first use.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Pool returns the underlying pool, for callers that open transactions to
// pass to the Tx methods.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// noRows turns pgx.ErrNoRows into ErrNotFound so that callers never import
// pgx to test for a missing row.
func noRows(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// isForeignKeyViolation reports whether err is a foreign-key violation on
// the named constraint ("" matches any).
func isForeignKeyViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}

// idEncoding yields lowercase IDs that are safe in URLs and Vault paths.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix followed by 120 random bits.
func newID(prefix string) string {
	var b [15]byte
	// crypto/rand.Read never returns an error since Go 1.24; it aborts the
	// program instead if the kernel cannot supply randomness.
	_, _ = rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// NewLinkID returns a fresh link ID ("lnk_..."). Callers that derive the
// Vault path from the ID generate it before CreateLink.
func NewLinkID() string { return newID("lnk_") }

// nullString maps "" to SQL NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// derefString maps SQL NULL to "".
func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// utc puts scanned timestamps in UTC: pgx yields them in time.Local, which
// makes equal instants compare unequal and depends on the host's zone.
func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}

// utcPtr is utc for nullable timestamps.
func utcPtr(ts ...**time.Time) {
	for _, t := range ts {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
}
