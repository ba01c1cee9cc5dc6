package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// TxBeginner is what migrations need: *pgxpool.Pool and *pgx.Conn satisfy it.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migration is one numbered schema change with its inverse.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// Migrations returns the embedded migrations in ascending version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		file := e.Name()
		var direction string
		switch {
		case strings.HasSuffix(file, ".up.sql"):
			direction = "up"
		case strings.HasSuffix(file, ".down.sql"):
			direction = "down"
		default:
			return nil, fmt.Errorf("store: migration %s: name must end in .up.sql or .down.sql", file)
		}
		base := strings.TrimSuffix(file, "."+direction+".sql")
		num, name, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 || name == "" {
			return nil, fmt.Errorf("store: migration %s: name must look like NNN_name.%s.sql", file, direction)
		}
		body, err := migrationFS.ReadFile(path.Join("migrations", file))
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", file, err)
		}
		m := byVersion[version]
		if m == nil {
			m = &Migration{Version: version, Name: name}
			byVersion[version] = m
		} else if m.Name != name {
			return nil, fmt.Errorf("store: migration version %d has two names: %q and %q", version, m.Name, name)
		}
		if direction == "up" {
			m.Up = string(body)
		} else {
			m.Down = string(body)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("store: migration %03d_%s needs both an up and a down file", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// lockAndPrepare serialises migrators of the same schema for the rest of the
// transaction, then makes sure the bookkeeping table exists. Creating the
// table only after taking the lock is what makes concurrent first runs safe:
// CREATE TABLE IF NOT EXISTS alone races on the catalog.
//
// The lock key includes the current schema so that migrating one schema
// does not wait on another (tests migrate many schemas at once).
func lockAndPrepare(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx,
		`SELECT pg_advisory_xact_lock(hashtext('tokenwarden.store.migrate'), hashtext(coalesce(current_schema(), '')))`,
	); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version    bigint      PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

func isApplied(ctx context.Context, tx pgx.Tx, version int) (bool, error) {
	var applied bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&applied)
	if err != nil {
		return false, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// Migrate applies every pending migration, each in its own transaction. It
// is idempotent and safe to run from several processes at once. Versions
// recorded in the database but unknown to this binary are left alone, so an
// older binary keeps starting during a rolling upgrade.
func Migrate(ctx context.Context, db TxBeginner) error {
	migrations, err := Migrations()
	if err != nil {
		return err
	}
	for _, m := range migrations {
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if err := lockAndPrepare(ctx, tx); err != nil {
				return err
			}
			applied, err := isApplied(ctx, tx, m.Version)
			if err != nil || applied {
				return err
			}
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migrate up %03d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// MigrateDown reverts applied migrations newer than targetVersion, newest
// first, each in its own transaction. targetVersion 0 reverts everything
// (schema_migrations itself stays, empty).
func MigrateDown(ctx context.Context, db TxBeginner, targetVersion int) error {
	if targetVersion < 0 {
		return errors.New("store: migrate down: target version must be >= 0")
	}
	migrations, err := Migrations()
	if err != nil {
		return err
	}
	known := map[int]bool{}
	for _, m := range migrations {
		known[m.Version] = true
	}
	// Refuse before touching anything if the database holds a version this
	// binary cannot revert: skipping it would leave a schema no migration
	// sequence describes.
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := lockAndPrepare(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations WHERE version > $1`, targetVersion)
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, v := range versions {
			if !known[int(v)] {
				return fmt.Errorf("applied version %d is unknown to this binary", v)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: migrate down: %w", err)
	}
	for i := len(migrations) - 1; i >= 0; i-- {
		m := migrations[i]
		if m.Version <= targetVersion {
			break
		}
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if err := lockAndPrepare(ctx, tx); err != nil {
				return err
			}
			applied, err := isApplied(ctx, tx, m.Version)
			if err != nil || !applied {
				return err
			}
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, m.Version)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migrate down %03d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// Migrate applies pending migrations using the Store's pool.
func (s *Store) Migrate(ctx context.Context) error { return Migrate(ctx, s.pool) }
