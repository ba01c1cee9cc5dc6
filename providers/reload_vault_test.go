package providers_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
)

// TestClientSecretChangedInVault: the catalog's client secret is changed
// in the real Vault while the registry runs (resolved as cmd/tokenwarden
// does, through secrets.Store); WatchSecrets notices, and the next token
// request sends the new secret, which the provider checks.
func TestClientSecretChangedInVault(t *testing.T) {
	info := testenv.StackInfo(t)
	vc, prefix := testenv.Vault(t)
	store := secrets.New(vc, info.VaultMount, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const path = "providers/rot"
	require.NoError(t, store.PutValue(ctx, path, map[string]string{"client_secret": "cs-vault-1"}))

	srv := newSecretServer(t, "cs-vault-1")
	c, err := load(t, fmt.Sprintf(`
providers:
  - name: rot
    kind: oauth2
    client_id: tokenwarden
    client_secret: {vault: "%s#client_secret"}
    grants: [client_credentials]
    endpoint: {token_url: "%s/token"}
`, path, srv.URL))
	require.NoError(t, err)
	reg, err := c.Open(ctx, func(ctx context.Context, ref providers.SecretRef) (string, error) {
		return store.Resolve(ctx, ref.Vault)
	}, nil)
	require.NoError(t, err)
	tok, err := exchange(t, reg)
	require.NoError(t, err)
	require.Equal(t, "at-cs-vault-1", tok.AccessToken)

	var logs syncLog
	watchCtx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		reg.WatchSecrets(watchCtx, 100*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	}()

	// The periodic reload: the secret changes in Vault, no request is
	// sent until the watcher has swapped it in, then the first one
	// carries the new secret.
	srv.accepted.Store("cs-vault-2")
	require.NoError(t, store.PutValue(ctx, path, map[string]string{"client_secret": "cs-vault-2"}))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "provider client secret changed in Vault") {
		require.True(t, time.Now().Before(deadline), "the watcher did not notice the new secret in 10 s; logs: %s", logs.String())
		time.Sleep(50 * time.Millisecond)
	}
	tok, err = exchange(t, reg)
	require.NoError(t, err)
	require.Equal(t, "at-cs-vault-2", tok.AccessToken)
	require.Equal(t, "cs-vault-2", srv.last(), "the provider saw the new secret")
	stopWatch()
	<-watching

	// On invalid_client, without the watcher: the rejected request is a
	// transient failure, and the next one uses the secret now in Vault.
	srv.accepted.Store("cs-vault-3")
	require.NoError(t, store.PutValue(ctx, path, map[string]string{"client_secret": "cs-vault-3"}))
	_, err = exchange(t, reg)
	require.Equal(t, providers.Transient, providers.ClassOf(err), "a rotation must not fail a request for good: %v", err)
	tok, err = exchange(t, reg)
	require.NoError(t, err)
	require.Equal(t, "at-cs-vault-3", tok.AccessToken)
	require.NotContains(t, logs.String(), "cs-vault", "a client secret in the log")
}

// syncLog is a log sink safe to read while the watcher writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
