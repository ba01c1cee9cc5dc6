package providers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

// secretServer is a token endpoint that accepts one client secret at a
// time (the provider's side of a rotation) and counts what it saw.
type secretServer struct {
	*httptest.Server
	accepted atomic.Value // string
	mu       sync.Mutex
	seen     []string
}

func newSecretServer(t *testing.T, secret string) *secretServer {
	t.Helper()
	s := &secretServer{}
	s.accepted.Store(secret)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, got, _ := r.BasicAuth()
		if got == "" {
			got = r.PostForm.Get("client_secret")
		}
		s.mu.Lock()
		s.seen = append(s.seen, got)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if got != s.accepted.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + got, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *secretServer) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

// fakeVault is the resolver's store: secrets by reference, and how many
// reads it answered.
type fakeVault struct {
	mu     sync.Mutex
	values map[string]string
	fail   error
	reads  int
}

func (v *fakeVault) set(ref, val string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.values[ref] = val
}

func (v *fakeVault) resolve(_ context.Context, ref providers.SecretRef) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reads++
	if v.fail != nil {
		return "", v.fail
	}
	return v.values[ref.Vault], nil
}

func (v *fakeVault) readCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reads
}

const reloadRef = "providers/rot#client_secret"

func openRotating(t *testing.T, srv *secretServer, v *fakeVault) *providers.Registry {
	t.Helper()
	c, err := load(t, fmt.Sprintf(`
providers:
  - name: rot
    kind: oauth2
    client_id: tokenwarden
    client_secret: {vault: %q}
    auth_style: header
    grants: [client_credentials]
    endpoint: {token_url: "%s/token"}
`, reloadRef, srv.URL))
	require.NoError(t, err)
	reg, err := c.Open(context.Background(), v.resolve, nil)
	require.NoError(t, err)
	return reg
}

func exchange(t *testing.T, reg *providers.Registry) (*providers.Token, error) {
	t.Helper()
	p, _, ok := reg.Get("rot")
	require.True(t, ok)
	return p.Exchange(context.Background(), providers.Grant{Type: providers.GrantClientCredentials})
}

// TestClientSecretReload is issue 14 point 5: a client secret changed in
// Vault is used without a restart, found by the periodic reload or at
// once when the provider rejects the old one.
func TestClientSecretReload(t *testing.T) {
	ctx := context.Background()
	t.Run("periodic reload swaps the provider", func(t *testing.T) {
		srv := newSecretServer(t, "cs-old")
		v := &fakeVault{values: map[string]string{reloadRef: "cs-old"}}
		reg := openRotating(t, srv, v)
		_, err := exchange(t, reg)
		require.NoError(t, err)

		changed, err := reg.ReloadSecrets(ctx)
		require.NoError(t, err)
		assert.Empty(t, changed, "nothing changed in Vault")

		v.set(reloadRef, "cs-new")
		srv.accepted.Store("cs-new")
		changed, err = reg.ReloadSecrets(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"rot"}, changed)
		tok, err := exchange(t, reg)
		require.NoError(t, err)
		assert.Equal(t, "at-cs-new", tok.AccessToken)
		assert.Equal(t, "cs-new", srv.last())
	})

	t.Run("invalid_client with a newer secret in Vault is transient", func(t *testing.T) {
		srv := newSecretServer(t, "cs-old")
		v := &fakeVault{values: map[string]string{reloadRef: "cs-old"}}
		reg := openRotating(t, srv, v)
		// Rotated at the provider and in Vault; the registry has not looked yet.
		srv.accepted.Store("cs-new")
		v.set(reloadRef, "cs-new")
		_, err := exchange(t, reg)
		var pe *providers.Error
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, providers.Transient, pe.Class, "retry with the new secret, not a dead link: %v", err)
		assert.Contains(t, err.Error(), "newer one was loaded from Vault")
		tok, err := exchange(t, reg)
		require.NoError(t, err, "the next request uses the new secret")
		assert.Equal(t, "at-cs-new", tok.AccessToken)
	})

	t.Run("invalid_client with the same secret in Vault stays permanent, one Vault read a second", func(t *testing.T) {
		srv := newSecretServer(t, "cs-provider-only")
		v := &fakeVault{values: map[string]string{reloadRef: "cs-old"}}
		reg := openRotating(t, srv, v)
		before := v.readCount()
		for range 3 {
			_, err := exchange(t, reg)
			assert.Equal(t, providers.Permanent, providers.ClassOf(err), "%v", err)
		}
		assert.Equal(t, before+1, v.readCount(), "rejections within the recheck interval read Vault once")
	})

	t.Run("a failed reload keeps the current secret", func(t *testing.T) {
		srv := newSecretServer(t, "cs-old")
		v := &fakeVault{values: map[string]string{reloadRef: "cs-old"}}
		reg := openRotating(t, srv, v)
		v.fail = errors.New("vault unavailable")
		changed, err := reg.ReloadSecrets(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `provider "rot"`)
		assert.Empty(t, changed)
		v.fail = nil
		_, err = exchange(t, reg)
		require.NoError(t, err)
	})

	t.Run("requests during reloads always succeed with the secret in effect", func(t *testing.T) {
		srv := newSecretServer(t, "cs-0")
		v := &fakeVault{values: map[string]string{reloadRef: "cs-0"}}
		reg := openRotating(t, srv, v)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var failures atomic.Int32
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					p, _, _ := reg.Get("rot")
					if _, err := p.Exchange(ctx, providers.Grant{Type: providers.GrantClientCredentials}); err != nil &&
						providers.ClassOf(err) != providers.Transient {
						failures.Add(1)
					}
				}
			}()
		}
		for i := 1; i <= 5; i++ {
			s := fmt.Sprintf("cs-%d", i)
			v.set(reloadRef, s)
			srv.accepted.Store(s)
			_, err := reg.ReloadSecrets(ctx)
			require.NoError(t, err)
		}
		close(stop)
		wg.Wait()
		assert.Zero(t, failures.Load(), "a request during a rotation failed for good")
		tok, err := exchange(t, reg)
		require.NoError(t, err)
		assert.Equal(t, "at-cs-5", tok.AccessToken)
	})
}

func TestRejectedSecretNeverInErrors(t *testing.T) {
	srv := newSecretServer(t, "cs-new-SECRET")
	v := &fakeVault{values: map[string]string{reloadRef: "cs-old-SECRET"}}
	reg := openRotating(t, srv, v)
	v.set(reloadRef, "cs-new-SECRET")
	_, err := exchange(t, reg)
	require.Error(t, err)
	assert.False(t, strings.Contains(err.Error(), "SECRET"), "a client secret in an error: %v", err)
}
