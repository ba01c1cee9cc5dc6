package store

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

func appliedVersions(t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	var versions []int64
	rows, err := pool.Query(testCtx(t), `SELECT version FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var v int64
		require.NoError(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	require.NoError(t, rows.Err())
	return versions
}

func tableExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, pool.QueryRow(testCtx(t),
		`SELECT to_regclass(current_schema() || '.' || $1) IS NOT NULL`, name).Scan(&exists))
	return exists
}

func allVersions(t *testing.T) []int64 {
	t.Helper()
	ms, err := Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	var out []int64
	for _, m := range ms {
		out = append(out, int64(m.Version))
	}
	return out
}

var storeTables = []string{"tenants", "api_keys", "links", "link_events", "oauth_states", "webhooks"}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	ctx := testCtx(t)

	require.NoError(t, Migrate(ctx, pool))
	require.Equal(t, allVersions(t), appliedVersions(t, pool))
	for _, table := range storeTables {
		require.True(t, tableExists(t, pool, table), table)
	}

	require.NoError(t, MigrateDown(ctx, pool, 0))
	require.Empty(t, appliedVersions(t, pool))
	for _, table := range storeTables {
		require.False(t, tableExists(t, pool, table), table)
	}
	// Down again is a no-op.
	require.NoError(t, MigrateDown(ctx, pool, 0))

	require.NoError(t, Migrate(ctx, pool))
	require.Equal(t, allVersions(t), appliedVersions(t, pool))
	_, err := New(pool).GetTenant(ctx, DefaultTenantID)
	require.NoError(t, err, "default tenant is back after re-migrating")

	require.Error(t, MigrateDown(ctx, pool, -1))
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	ctx := testCtx(t)

	require.NoError(t, Migrate(ctx, pool))
	var firstApplied string
	require.NoError(t, pool.QueryRow(ctx, `SELECT applied_at::text FROM schema_migrations WHERE version = 1`).Scan(&firstApplied))

	require.NoError(t, Migrate(ctx, pool))
	require.Equal(t, allVersions(t), appliedVersions(t, pool))
	var secondApplied string
	require.NoError(t, pool.QueryRow(ctx, `SELECT applied_at::text FROM schema_migrations WHERE version = 1`).Scan(&secondApplied))
	require.Equal(t, firstApplied, secondApplied, "second run must not re-apply")
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	ctx := testCtx(t)

	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = Migrate(ctx, pool)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "migrator %d", i)
	}
	require.Equal(t, allVersions(t), appliedVersions(t, pool))
	for _, table := range storeTables {
		require.True(t, tableExists(t, pool, table), table)
	}
}

func TestMigrationsParse(t *testing.T) {
	t.Parallel()
	ms, err := Migrations()
	require.NoError(t, err)
	for i, m := range ms {
		require.Equal(t, i+1, m.Version, "versions are contiguous from 1")
		require.NotEmpty(t, m.Name)
		require.NotEmpty(t, m.Up)
		require.NotEmpty(t, m.Down)
	}
}
