package secrets_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	vault "github.com/hashicorp/vault/api"

	vaultpolicy "github.com/tokenwarden/tokenwarden/deployments/vault"
	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

func TestAuthConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  secrets.AuthConfig
		want string // "" for valid
	}{
		{"nothing", secrets.AuthConfig{}, "no Vault credentials"},
		{"token", secrets.AuthConfig{Token: "t"}, ""},
		{"approle inferred", secrets.AuthConfig{RoleID: "r", SecretID: "s"}, ""},
		{"approle from a file", secrets.AuthConfig{Method: secrets.AuthAppRole, RoleID: "r", SecretIDFile: "/f"}, ""},
		{"approle without secret ID", secrets.AuthConfig{RoleID: "r"}, "TOKENWARDEN_VAULT_SECRET_ID_FILE"},
		{"approle with two secret IDs", secrets.AuthConfig{RoleID: "r", SecretID: "s", SecretIDFile: "/f"}, "not both"},
		{"approle without role", secrets.AuthConfig{Method: secrets.AuthAppRole, SecretID: "s"}, "TOKENWARDEN_VAULT_ROLE_ID"},
		{"kubernetes", secrets.AuthConfig{Method: secrets.AuthKubernetes, K8sRole: "tokenwarden-worker"}, ""},
		{"kubernetes inferred", secrets.AuthConfig{K8sRole: "tokenwarden-worker"}, ""},
		{"kubernetes without role", secrets.AuthConfig{Method: secrets.AuthKubernetes}, "TOKENWARDEN_VAULT_K8S_ROLE"},
		{"unknown method", secrets.AuthConfig{Method: "ldap"}, "want approle, kubernetes or token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// authEnv is a private corner of the shared Vault for the login tests: a
// root client to arrange things, and a policy (the worker's, for a
// private prefix) to give the identities it creates.
type authEnv struct {
	info   devstack.Info
	root   *vault.Client
	engine *vault.Client // a client without the process's token
	prefix string
	policy string
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	info := testenv.StackInfo(t)
	engine, prefix := testenv.Vault(t)
	root, err := engine.Clone()
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(info.VaultRootToken)
	e := &authEnv{info: info, root: root, prefix: prefix, policy: "test-auth-" + testenv.Name(t, 60)}
	if e.engine, err = engine.Clone(); err != nil {
		t.Fatal(err)
	}
	e.engine.ClearToken()
	ctx := context.Background()
	if err := root.Sys().PutPolicyWithContext(ctx, e.policy, vaultpolicy.ForPrefix(vaultpolicy.WorkerPolicy, info.VaultMount, prefix)); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	t.Cleanup(func() { _ = root.Sys().DeletePolicyWithContext(context.Background(), e.policy) })
	return e
}

// appRole creates an AppRole with the test policy and returns its role ID.
func (e *authEnv) appRole(t *testing.T, ttl, maxTTL string) (name, roleID string) {
	t.Helper()
	ctx := context.Background()
	name = "test-" + testenv.Name(t, 40)
	path := "auth/approle/role/" + name
	if _, err := e.root.Logical().WriteWithContext(ctx, path, map[string]any{
		"token_policies": []string{e.policy}, "token_ttl": ttl, "token_max_ttl": maxTTL,
	}); err != nil {
		t.Fatalf("create AppRole: %v", err)
	}
	t.Cleanup(func() { _, _ = e.root.Logical().DeleteWithContext(context.Background(), path) })
	sec, err := e.root.Logical().ReadWithContext(ctx, path+"/role-id")
	if err != nil {
		t.Fatalf("read role ID: %v", err)
	}
	return name, sec.Data["role_id"].(string)
}

// secretID makes a secret ID for the role, response-wrapped when asked:
// then it is the wrapping token, which works once.
func (e *authEnv) secretID(t *testing.T, role string, wrapped bool) string {
	t.Helper()
	c, err := e.root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(e.root.Token())
	if wrapped {
		c.SetWrappingLookupFunc(func(string, string) string { return "5m" })
	}
	sec, err := c.Logical().WriteWithContext(context.Background(), "auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatalf("make secret ID: %v", err)
	}
	if wrapped {
		return sec.WrapInfo.Token
	}
	return sec.Data["secret_id"].(string)
}

// token creates a token with the test policy (and default, for
// renew-self and lookup-self).
func (e *authEnv) token(t *testing.T, ttl, maxTTL string, renewable bool) string {
	t.Helper()
	sec, err := e.root.Auth().Token().CreateWithContext(context.Background(), &vault.TokenCreateRequest{
		Policies: []string{e.policy}, TTL: ttl, ExplicitMaxTTL: maxTTL, Renewable: &renewable})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	tok := sec.Auth.ClientToken
	t.Cleanup(func() { _ = e.root.Auth().Token().RevokeOrphanWithContext(context.Background(), tok) })
	return tok
}

// client returns a fresh client without a token, as the process has at start.
func (e *authEnv) client(t *testing.T) *vault.Client {
	t.Helper()
	c, err := e.engine.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	return c
}

// fakeKubernetes answers Vault's TokenReview requests as the Kubernetes API
// would for the service account tokens it issued.
type fakeKubernetes struct {
	srv      *httptest.Server
	reviewer string // the token Vault must present
	key      *rsa.PrivateKey
	mu       sync.Mutex
	issued   map[string]bool
	reviewed []string
}

const (
	k8sNamespace = "tokenwarden"
	k8sAccount   = "tokenwarden-gateway"
	k8sUID       = "4f0c1b7e-0000-4000-8000-000000000001"
)

func newFakeKubernetes(t *testing.T) *fakeKubernetes {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKubernetes{reviewer: "reviewer-" + testenv.Name(t, 20), key: key, issued: map[string]bool{}}
	k.srv = httptest.NewServer(http.HandlerFunc(k.review))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *fakeKubernetes) review(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+k.reviewer {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`))
		return
	}
	var req struct {
		Spec struct {
			Token     string   `json:"token"`
			Audiences []string `json:"audiences"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	ok := k.issued[req.Spec.Token]
	k.reviewed = append(k.reviewed, req.Spec.Token)
	k.mu.Unlock()
	status := map[string]any{"authenticated": false}
	if ok {
		// The token's audience is the API server's, which the review
		// confirms when asked about it.
		status = map[string]any{"authenticated": true, "audiences": req.Spec.Audiences, "user": map[string]any{
			"username": "system:serviceaccount:" + k8sNamespace + ":" + k8sAccount, "uid": k8sUID}}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
}

// issue signs a service account token, as the kubelet projects one.
func (k *fakeKubernetes) issue(t *testing.T) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:" + k8sNamespace + ":" + k8sAccount,
		"aud": []string{"https://kubernetes.default.svc.cluster.local"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti":           testenv.Name(t, 30),
		"kubernetes.io": map[string]any{"namespace": k8sNamespace, "serviceaccount": map[string]any{"name": k8sAccount, "uid": k8sUID}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.issued[tok] = true
	k.mu.Unlock()
	return tok
}

func (k *fakeKubernetes) lastReviewed() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.reviewed) == 0 {
		return ""
	}
	return k.reviewed[len(k.reviewed)-1]
}

// kubernetesAuth enables Vault's Kubernetes auth method on a private
// mount, pointed at a fake Kubernetes API, with a role for the gateway's
// service account.
func (e *authEnv) kubernetesAuth(t *testing.T) (mount, role string, k *fakeKubernetes) {
	t.Helper()
	ctx := context.Background()
	k = newFakeKubernetes(t)
	mount, role = "k8s-"+testenv.Name(t, 30), "tokenwarden-gateway"
	if err := e.root.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatalf("enable kubernetes auth: %v", err)
	}
	t.Cleanup(func() { _ = e.root.Sys().DisableAuthWithContext(context.Background(), mount) })
	if _, err := e.root.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host": k.srv.URL, "token_reviewer_jwt": k.reviewer, "disable_local_ca_jwt": true,
	}); err != nil {
		t.Fatalf("configure kubernetes auth: %v", err)
	}
	if _, err := e.root.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/"+role, map[string]any{
		"bound_service_account_names": []string{k8sAccount}, "bound_service_account_namespaces": []string{k8sNamespace},
		"token_policies": []string{e.policy}, "token_ttl": "10m",
	}); err != nil {
		t.Fatalf("kubernetes auth role: %v", err)
	}
	return mount, role, k
}

// syncBuffer is a log sink tests read while the code under test writes.
type syncBuffer = e2e.SyncBuffer

func writeFile(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLoginMethodsLogInAgainOn403 is issue 14 point 5: every login method
// gets a token the store works with, and when Vault refuses that token
// (revoked), the store logs in again with the same method and goes on.
// The wrapped secret ID is unwrapped once; the Kubernetes login reads the
// service account token file again at each login (Kubernetes rotates it).
func TestLoginMethodsLogInAgainOn403(t *testing.T) {
	e := newAuthEnv(t)
	dir := t.TempDir()
	ctx := context.Background()
	type setup struct {
		cfg secrets.AuthConfig
		// beforeRelogin runs after the first login; afterRelogin checks
		// the second.
		beforeRelogin, afterRelogin func(t *testing.T)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) setup
	}{
		{"approle, secret ID as is", func(t *testing.T) setup {
			role, roleID := e.appRole(t, "10m", "1h")
			return setup{cfg: secrets.AuthConfig{RoleID: roleID, SecretID: e.secretID(t, role, false)}}
		}},
		{"approle, secret ID from a file", func(t *testing.T) setup {
			role, roleID := e.appRole(t, "10m", "1h")
			file := filepath.Join(dir, "secret-id")
			writeFile(t, file, e.secretID(t, role, false))
			// The orchestrator hands out a new secret ID: the next login reads it.
			return setup{cfg: secrets.AuthConfig{Method: secrets.AuthAppRole, RoleID: roleID, SecretIDFile: file},
				beforeRelogin: func(t *testing.T) { writeFile(t, file, e.secretID(t, role, false)) }}
		}},
		{"approle, wrapped secret ID from a file", func(t *testing.T) setup {
			role, roleID := e.appRole(t, "10m", "1h")
			file := filepath.Join(dir, "wrapped-secret-id")
			writeFile(t, file, e.secretID(t, role, true))
			cfg := secrets.AuthConfig{RoleID: roleID, SecretIDFile: file, SecretIDWrapped: true}
			return setup{cfg: cfg, afterRelogin: func(t *testing.T) {
				// The wrapping token was spent by the first login: a
				// second process given the same one is refused, and says
				// what that may mean.
				_, err := secrets.Login(ctx, e.client(t), cfg, nil)
				if err == nil || !strings.Contains(err.Error(), "someone else") {
					t.Fatalf("login with a spent wrapping token: %v, want a refusal naming the risk", err)
				}
			}}
		}},
		{"kubernetes", func(t *testing.T) setup {
			mount, role, k := e.kubernetesAuth(t)
			file := filepath.Join(dir, "sa-token")
			writeFile(t, file, k.issue(t))
			var rotated string
			return setup{cfg: secrets.AuthConfig{Method: secrets.AuthKubernetes, K8sRole: role, K8sMount: mount, K8sTokenFile: file},
				beforeRelogin: func(t *testing.T) {
					rotated = k.issue(t)
					writeFile(t, file, rotated)
				},
				afterRelogin: func(t *testing.T) {
					if k.lastReviewed() != rotated {
						t.Fatal("the second login did not present the rotated service account token")
					}
					// A token the cluster never issued is refused.
					forged := filepath.Join(dir, "forged-sa-token")
					writeFile(t, forged, strings.Replace(rotated, ".", "x.", 1))
					if _, err := secrets.Login(ctx, e.client(t), secrets.AuthConfig{Method: secrets.AuthKubernetes,
						K8sRole: role, K8sMount: mount, K8sTokenFile: forged}, nil); err == nil {
						t.Fatal("a service account token Kubernetes does not know logged in")
					}
				}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			su := tc.setup(t)
			c := e.client(t)
			var logs syncBuffer
			sess, err := secrets.Login(ctx, c, su.cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			s := secrets.New(c, e.info.VaultMount, e.prefix)
			s.Reauth = sess.Reauth()
			if s.Reauth == nil {
				t.Fatal("a login method without Reauth")
			}
			ref := "providers/" + testenv.Name(t, 20) + "#client_secret"
			path, _, _ := strings.Cut(ref, "#")
			if err := s.PutValue(ctx, path, map[string]string{"client_secret": "cs-auth-1"}); err != nil {
				t.Fatalf("write with the login's token: %v", err)
			}
			first := c.Token()
			if su.beforeRelogin != nil {
				su.beforeRelogin(t)
			}
			if err := e.root.Auth().Token().RevokeOrphanWithContext(ctx, first); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			v, err := s.Resolve(ctx, ref)
			if err != nil || v != "cs-auth-1" {
				t.Fatalf("read after the token was revoked: %v", err)
			}
			if c.Token() == first {
				t.Fatal("the token was not replaced")
			}
			if su.afterRelogin != nil {
				su.afterRelogin(t)
			}
			for _, secret := range []string{first, c.Token(), su.cfg.SecretID} {
				if secret != "" && strings.Contains(logs.String(), secret) {
					t.Fatal("a token or secret ID is in the log")
				}
			}
		})
	}
}

// keep runs the session's Keep until the test ends.
func keep(t *testing.T, sess *secrets.Session) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sess.Keep(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// holdsFor checks, every 250 ms for d, that ok holds, and fails at the
// first time it does not.
func holdsFor(t *testing.T, d time.Duration, what string, ok func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := ok(); err != nil {
			t.Fatalf("%s, %s before the end of the check: %v", what, time.Until(end).Round(time.Second), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestStaticTokenIsRenewedWhileItLives: a renewable VAULT_TOKEN with a
// 3-second TTL stays valid for three times that while Keep runs.
func TestStaticTokenIsRenewedWhileItLives(t *testing.T) {
	e := newAuthEnv(t)
	tok := e.token(t, "3s", "5m", true)
	c := e.client(t)
	sess, err := secrets.Login(context.Background(), c, secrets.AuthConfig{Token: tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Reauth() != nil {
		t.Fatal("a static token cannot log in again, yet Reauth is set")
	}
	keep(t, sess)
	holdsFor(t, 9*time.Second, "the token expired", func() error {
		_, err := c.Auth().Token().LookupSelf()
		return err
	})
}

// TestLoginIsRenewedThenRepeated: an AppRole token (TTL 4 s, maximum 8 s)
// is renewed, then replaced by a new login before it reaches its maximum:
// the store works throughout without ever meeting a 403 (no Reauth). The
// new login comes when a tenth or so of the last lease is left (vault's
// LifetimeWatcher), here under a second.
func TestLoginIsRenewedThenRepeated(t *testing.T) {
	e := newAuthEnv(t)
	role, roleID := e.appRole(t, "4s", "8s")
	c := e.client(t)
	sess, err := secrets.Login(context.Background(), c, secrets.AuthConfig{RoleID: roleID, SecretID: e.secretID(t, role, false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := secrets.New(c, e.info.VaultMount, e.prefix)
	if err := s.PutValue(context.Background(), "providers/p", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	keep(t, sess)
	tokens := map[string]bool{}
	holdsFor(t, 14*time.Second, "the store lost Vault", func() error {
		tokens[c.Token()] = true
		_, err := s.Resolve(context.Background(), "providers/p#k")
		return err
	})
	if len(tokens) < 2 {
		t.Fatalf("%d tokens in 14 s of 8-second logins, want new logins", len(tokens))
	}
}

// TestStaticTokenExpiryIsLoud: a VAULT_TOKEN that cannot be renewed is
// announced at start, again before it expires, and when it has expired,
// never by value.
func TestStaticTokenExpiryIsLoud(t *testing.T) {
	e := newAuthEnv(t)
	tok := e.token(t, "3s", "", false)
	var logs syncBuffer
	sess, err := secrets.Login(context.Background(), e.client(t), secrets.AuthConfig{Token: tok}, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	keep(t, sess)
	want := []string{"VAULT_TOKEN is not renewable", "cannot be renewed any further and expires soon", "VAULT_TOKEN has expired"}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < len(want); {
		switch {
		case strings.Contains(logs.String(), want[i]):
			i++
		case time.Now().After(deadline):
			t.Fatalf("no log line %q; logs:\n%s", want[i], logs.String())
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	if strings.Contains(logs.String(), tok) {
		t.Fatal("the token is in the log")
	}
}
