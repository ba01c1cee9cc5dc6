package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// testDSN finds the test database: TOKENWARDEN_TEST_DATABASE_URL, or the
// stack file named by TOKENWARDEN_TEST_STACK (written by `make test`).
func testDSN(t *testing.T) string {
	t.Helper()
	if dsn := os.Getenv("TOKENWARDEN_TEST_DATABASE_URL"); dsn != "" {
		return dsn
	}
	if file := os.Getenv("TOKENWARDEN_TEST_STACK"); file != "" {
		raw, err := os.ReadFile(file)
		require.NoError(t, err, "read TOKENWARDEN_TEST_STACK")
		var stack struct {
			PostgresURL      string `json:"PostgresURL"`
			PostgresURLSnake string `json:"postgres_url"`
		}
		require.NoError(t, json.Unmarshal(raw, &stack), "parse TOKENWARDEN_TEST_STACK")
		if stack.PostgresURL != "" {
			return stack.PostgresURL
		}
		if stack.PostgresURLSnake != "" {
			return stack.PostgresURLSnake
		}
		t.Fatalf("TOKENWARDEN_TEST_STACK file %s has no postgres_url", file)
	}
	if os.Getenv("TOKENWARDEN_REQUIRE_STACK") == "1" {
		t.Fatal("no test database: set TOKENWARDEN_TEST_DATABASE_URL or TOKENWARDEN_TEST_STACK")
	}
	t.Skip("no test database; run `make test` (or set TOKENWARDEN_TEST_DATABASE_URL)")
	return ""
}

// testPool returns a pool whose search_path is a fresh, empty schema that is
// dropped when the test ends.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	dsn := testDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "test_" + hex.EncodeToString(b[:])

	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err, "connect to test database")
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))

	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)

	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return pool
}

// testStore returns a migrated Store in a schema of its own.
func testStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := testPool(t)
	require.NoError(t, Migrate(testCtx(t), pool))
	return New(pool), pool
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// requireNotStored fails if secret appears, verbatim or hex-encoded, in any
// row of any table of the test schema.
func requireNotStored(t *testing.T, pool *pgxpool.Pool, secret string) {
	t.Helper()
	ctx := testCtx(t)
	rows, err := pool.Query(ctx, `
		SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)

	hexSecret := hex.EncodeToString([]byte(secret))
	scanned := 0
	for _, table := range tables {
		rows, err := pool.Query(ctx, `SELECT row_to_json(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		require.NoError(t, err)
		contents, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, row := range contents {
			scanned++
			// Do not print the row or the secret: test output is a log too.
			if strings.Contains(row, secret) || strings.Contains(strings.ToLower(row), hexSecret) {
				t.Fatalf("secret found in a row of table %s", table)
			}
		}
	}
	require.Positive(t, scanned, "no rows scanned; the check would pass vacuously")
}

func TestPing(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	require.NoError(t, s.Ping(testCtx(t)))
}

func TestTenants(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	ctx := testCtx(t)

	def, err := s.GetTenant(ctx, DefaultTenantID)
	require.NoError(t, err, "migration creates the default tenant")
	require.Equal(t, DefaultTenantID, def.ID)

	_, err = s.GetTenant(ctx, "acme")
	require.ErrorIs(t, err, ErrNotFound)

	a, err := s.EnsureTenant(ctx, "acme", "Acme")
	require.NoError(t, err)
	again, err := s.EnsureTenant(ctx, "acme", "Renamed")
	require.NoError(t, err)
	require.Equal(t, a, again, "EnsureTenant keeps the existing tenant")

	_, err = s.EnsureTenant(ctx, "", "x")
	require.Error(t, err)
}
