package main

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

func runAPIKeyCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = runAPIKey(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// closedPort returns a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestAPIKeyRejectsBadArguments(t *testing.T) {
	// Argument errors come before any connection: this URL would fail.
	t.Setenv("TOKENWARDEN_DATABASE_URL", "postgres://nobody@"+closedPort(t)+"/x")
	cases := map[string][]string{
		"needs --name":               {"create", "--tenant", "t1"},
		"takes no arguments":         {"create", "--name", "n", "stray"},
		"give exactly one key id":    {"revoke", "--tenant", "t1"},
		"unknown apikey command":     {"rotate"},
		"no apikey command given":    {},
		"--tenant must not be empty": {"list", "--tenant", " "},
	}
	for want, args := range cases {
		_, _, err := runAPIKeyCLI(t, args...)
		require.Error(t, err, args)
		assert.Contains(t, err.Error(), want, args)
	}
}

func TestAPIKeyUnreachableDatabaseNamesTheFixWithoutThePassword(t *testing.T) {
	dsn := "postgres://tw:pg-s3cret@" + closedPort(t) + "/tokenwarden?sslmode=disable&connect_timeout=2"
	_, _, err := runAPIKeyCLI(t, "list", "--database-url", dsn)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unreachable")
	assert.Contains(t, err.Error(), "TOKENWARDEN_DATABASE_URL")
	assert.NotContains(t, err.Error(), "pg-s3cret")

	_, _, err = runAPIKeyCLI(t, "list", "--database-url", "postgres://tw:pg-s3cret@[::1/db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a valid PostgreSQL URL")
	assert.NotContains(t, err.Error(), "pg-s3cret")
}

// TestAPIKeyLifecycle runs create, list and revoke against the test
// stack's PostgreSQL (skipped without one; see internal/testenv).
func TestAPIKeyLifecycle(t *testing.T) {
	pool, schema := testenv.Postgres(t)
	ctx := context.Background()
	require.NoError(t, store.Migrate(ctx, pool))

	u, err := url.Parse(testenv.StackInfo(t).PostgresURL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	t.Setenv("TOKENWARDEN_DATABASE_URL", u.String())

	out, errOut, err := runAPIKeyCLI(t, "create", "--tenant", "acme-corp", "--name", "billing")
	require.NoError(t, err)
	key := strings.TrimSpace(out)
	assert.Regexp(t, `^`+regexp.QuoteMeta(store.APIKeyPrefix)+`\S{40,}$`, key, "stdout is the key alone")
	assert.Contains(t, errOut, "only time the key is shown")
	assert.NotContains(t, errOut, key)

	// The key works: the store authenticates it for the new tenant.
	k, err := store.New(pool).LookupAPIKey(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "acme-corp", k.TenantID)

	out, _, err = runAPIKeyCLI(t, "list", "--tenant", "acme-corp")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^ID\s+NAME\s+PREFIX\s+CREATED\s+LAST USED\s+REVOKED$`, out)
	assert.Regexp(t, `(?m)^`+k.ID+`\s+billing\s+`+regexp.QuoteMeta(key[:8])+`…\s+\S+\s+\S+\s+-$`, out)
	assert.NotContains(t, out, key, "list never shows a key")

	out, _, err = runAPIKeyCLI(t, "revoke", "--tenant", "acme-corp", k.ID)
	require.NoError(t, err)
	assert.Contains(t, out, k.ID+` ("billing") revoked`)
	_, err = store.New(pool).LookupAPIKey(ctx, key)
	require.ErrorIs(t, err, store.ErrNotFound)

	_, _, err = runAPIKeyCLI(t, "revoke", "--tenant", "other", k.ID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tenant other has no API key "+k.ID)
	assert.Contains(t, err.Error(), "hint: ")

	out, _, err = runAPIKeyCLI(t, "list", "--tenant", "acme-corp", "--json")
	require.NoError(t, err)
	assert.Contains(t, out, `"revoked_at": "`)
}
