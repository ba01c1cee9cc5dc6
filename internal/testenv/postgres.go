package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres creates a fresh schema in the "tokenwarden" database and returns
// a pool whose connections have search_path set to it, so unqualified DDL
// and queries (migrations included) land in the schema. The pool is closed
// and the schema dropped, with everything in it, on cleanup.
func Postgres(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	info := StackInfo(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	schema := "test_" + underscore(Name(t, 58))
	admin, err := pgx.Connect(ctx, info.PostgresURL)
	if err != nil {
		t.Fatalf("testenv: connect to Postgres: %v", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("testenv: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if os.Getenv(KeepStateEnv) != "" {
			// Left for a look after the run (see KeepStateEnv).
			t.Logf("testenv: schema %s kept", schema)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, info.PostgresURL)
		if err != nil {
			t.Errorf("testenv: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("testenv: drop schema %s: %v", schema, err)
		}
	})

	cfg, err := pgxpool.ParseConfig(info.PostgresURL)
	if err != nil {
		t.Fatalf("testenv: parse Postgres URL: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	// Many test packages share one server: keep each pool small.
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testenv: Postgres pool: %v", err)
	}
	// Registered after the schema's cleanup, so it runs before it: the pool
	// must let go of its connections before DROP SCHEMA.
	t.Cleanup(pool.Close)
	return pool, schema
}

func underscore(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
