package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
	k8sauth "github.com/hashicorp/vault/api/auth/kubernetes"
)

// How a process obtains its Vault token (AuthConfig.Method).
const (
	// AuthToken uses a token handed to the process (VAULT_TOKEN). It is
	// renewed while it can be; nothing can log in again when it ends.
	AuthToken = "token"
	// AuthAppRole logs in with a role ID and a secret ID.
	AuthAppRole = "approle"
	// AuthKubernetes logs in with the pod's service account token.
	AuthKubernetes = "kubernetes"
)

// DefaultServiceAccountTokenFile is where Kubernetes mounts a pod's
// service account token.
const DefaultServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// maxSecretFile caps what is read from a secret-ID or service account
// token file: both are well under a kilobyte, and a wrong path (a log
// file, a device) must not be read whole.
const maxSecretFile = 64 << 10

// AuthConfig says how a process logs in to Vault. cmd/tokenwarden fills
// it from the environment (README, Configuration).
type AuthConfig struct {
	// Method is AuthToken, AuthAppRole or AuthKubernetes; "" infers
	// AppRole when RoleID is set, else a token when Token is, else
	// Kubernetes when K8sRole is.
	Method string
	// Token is a Vault token given as is (AuthToken).
	Token string
	// RoleID and SecretID, or SecretIDFile (read at every login, so an
	// orchestrator may replace it), are the AppRole credentials.
	RoleID       string
	SecretID     string
	SecretIDFile string
	// SecretIDWrapped: the secret ID given is a response-wrapping token
	// around the real one. It is unwrapped once (a wrapping token works
	// once) and the secret ID kept in memory for later logins; a new
	// wrapping token in SecretIDFile is unwrapped when it appears.
	SecretIDWrapped bool
	// AppRoleMount is the AppRole auth mount; "" means "approle".
	AppRoleMount string
	// K8sRole is the Vault Kubernetes auth role, K8sMount its mount (""
	// means "kubernetes"), K8sTokenFile the service account token ("" means
	// DefaultServiceAccountTokenFile; read at every login, since
	// Kubernetes rotates projected tokens).
	K8sRole      string
	K8sMount     string
	K8sTokenFile string
}

// method is the method in use, Method or the inferred one.
func (a AuthConfig) method() string {
	switch {
	case a.Method != "":
		return a.Method
	case a.RoleID != "":
		return AuthAppRole
	case a.Token == "" && a.K8sRole != "":
		return AuthKubernetes
	}
	return AuthToken
}

// Check reports a configuration that cannot log in, naming the
// environment variable to set.
func (a AuthConfig) Check() error {
	switch a.method() {
	case AuthToken:
		if a.Token == "" {
			return errors.New("no Vault credentials: set TOKENWARDEN_VAULT_AUTH=kubernetes with TOKENWARDEN_VAULT_K8S_ROLE, " +
				"or TOKENWARDEN_VAULT_ROLE_ID with TOKENWARDEN_VAULT_SECRET_ID or TOKENWARDEN_VAULT_SECRET_ID_FILE (AppRole), or VAULT_TOKEN")
		}
	case AuthAppRole:
		switch {
		case a.RoleID == "":
			return errors.New("vault AppRole: set TOKENWARDEN_VAULT_ROLE_ID")
		case a.SecretID == "" && a.SecretIDFile == "":
			return errors.New("vault AppRole: set TOKENWARDEN_VAULT_SECRET_ID or TOKENWARDEN_VAULT_SECRET_ID_FILE")
		case a.SecretID != "" && a.SecretIDFile != "":
			return errors.New("vault AppRole: set one of TOKENWARDEN_VAULT_SECRET_ID and TOKENWARDEN_VAULT_SECRET_ID_FILE, not both")
		}
	case AuthKubernetes:
		if a.K8sRole == "" {
			return errors.New("vault Kubernetes auth: set TOKENWARDEN_VAULT_K8S_ROLE to the Vault role bound to this pod's service account")
		}
	default:
		return fmt.Errorf("TOKENWARDEN_VAULT_AUTH=%q: want approle, kubernetes or token", a.Method)
	}
	return nil
}

// Session is a process's Vault login: it gives the client its token,
// logs in again when asked (Reauth, after a 403) and keeps the token alive
// (Keep, renew.go).
type Session struct {
	c   *vault.Client
	cfg AuthConfig
	log *slog.Logger

	mu sync.Mutex
	// current is the reply of the latest login, or the looked-up static
	// token; Keep renews it.
	current *vault.Secret
	// wrapped is the wrapping token last unwrapped, secretID what it held.
	wrapped, secretID string
	// relogged tells Keep that Reauth replaced the token it watches.
	relogged chan struct{}
}

// Login gives c a token as cfg says: the static token, or a first login.
// logger may be nil. Run Keep beside it to renew the token.
func Login(ctx context.Context, c *vault.Client, cfg AuthConfig, logger *slog.Logger) (*Session, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Session{c: c, cfg: cfg, log: logger, relogged: make(chan struct{}, 1)}
	if cfg.method() == AuthToken {
		c.SetToken(cfg.Token)
		s.current = s.lookupStatic(ctx)
		return s, nil
	}
	if err := s.login(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Method is the auth method in use.
func (s *Session) Method() string { return s.cfg.method() }

// Reauth is what Store.Reauth should be: a fresh login, or nil for a
// static token, which nothing can replace.
func (s *Session) Reauth() func(context.Context) error {
	if s.cfg.method() == AuthToken {
		return nil
	}
	return func(ctx context.Context) error {
		if err := s.login(ctx); err != nil {
			s.log.Error("vault refused the token and logging in again failed", "method", s.Method(), "error", err.Error())
			return err
		}
		s.log.Warn("vault refused the token (revoked or expired); logged in again", "method", s.Method())
		select {
		case s.relogged <- struct{}{}:
		default:
		}
		return nil
	}
}

// login logs in with the configured method and gives c the new token.
func (s *Session) login(ctx context.Context) error {
	// Log in on a token-less copy: the current token may have expired,
	// and a login request needs none.
	lc, err := s.c.Clone()
	if err != nil {
		return fmt.Errorf("vault login: %w", err)
	}
	lc.ClearToken()
	var sec *vault.Secret
	switch s.cfg.method() {
	case AuthAppRole:
		sec, err = s.approle(ctx, lc)
	case AuthKubernetes:
		sec, err = s.kubernetes(ctx, lc)
	default:
		return fmt.Errorf("vault login: method %q cannot log in", s.cfg.method())
	}
	if err != nil {
		return err
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return fmt.Errorf("vault %s login at %s: no token in reply", s.cfg.method(), s.c.Address())
	}
	s.mu.Lock()
	s.current = sec
	s.mu.Unlock()
	s.c.SetToken(sec.Auth.ClientToken)
	return nil
}

func (s *Session) approle(ctx context.Context, lc *vault.Client) (*vault.Secret, error) {
	secretID, err := s.appRoleSecretID(ctx, lc)
	if err != nil {
		return nil, err
	}
	mount := s.cfg.AppRoleMount
	if mount == "" {
		mount = "approle"
	}
	sec, err := lc.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
		"role_id": s.cfg.RoleID, "secret_id": secretID,
	})
	if err != nil {
		// Vault's error names the path and the reason, never the secret ID.
		return nil, fmt.Errorf("vault AppRole login at %s: %w", s.c.Address(), err)
	}
	return sec, nil
}

// appRoleSecretID is the secret ID to log in with: as given, read from
// its file, and unwrapped when it is a wrapping token.
func (s *Session) appRoleSecretID(ctx context.Context, lc *vault.Client) (string, error) {
	v := s.cfg.SecretID
	if s.cfg.SecretIDFile != "" {
		var err error
		if v, err = readSecretFile(s.cfg.SecretIDFile); err != nil {
			return "", fmt.Errorf("vault AppRole secret ID (TOKENWARDEN_VAULT_SECRET_ID_FILE): %w", err)
		}
	}
	if !s.cfg.SecretIDWrapped {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == s.wrapped && s.secretID != "" {
		return s.secretID, nil
	}
	sec, err := lc.Logical().UnwrapWithContext(ctx, v)
	if err != nil {
		// A wrapping token already spent is a warning sign: someone else
		// may have unwrapped the secret ID on its way here.
		return "", fmt.Errorf("vault AppRole: unwrapping the wrapped secret ID failed (a wrapping token works once; "+
			"if this process did not unwrap it, someone else may have): %w", err)
	}
	var id string
	if sec != nil {
		id, _ = sec.Data["secret_id"].(string)
	}
	if id == "" {
		return "", errors.New("vault AppRole: the wrapping token held no secret_id")
	}
	s.wrapped, s.secretID = v, id
	return id, nil
}

func (s *Session) kubernetes(ctx context.Context, lc *vault.Client) (*vault.Secret, error) {
	file := s.cfg.K8sTokenFile
	if file == "" {
		file = DefaultServiceAccountTokenFile
	}
	mount := s.cfg.K8sMount
	if mount == "" {
		mount = "kubernetes"
	}
	// Read at every login: Kubernetes rotates projected service account
	// tokens. Trimmed, as a file written by hand ends in a newline.
	jwt, err := readSecretFile(file)
	if err != nil {
		return nil, fmt.Errorf("vault Kubernetes auth: service account token (TOKENWARDEN_VAULT_K8S_TOKEN_FILE): %w", err)
	}
	m, err := k8sauth.NewKubernetesAuth(s.cfg.K8sRole, k8sauth.WithMountPath(mount), k8sauth.WithServiceAccountToken(jwt))
	if err != nil {
		return nil, fmt.Errorf("vault Kubernetes auth: %w", err)
	}
	sec, err := m.Login(ctx, lc)
	if err != nil {
		return nil, fmt.Errorf("vault Kubernetes auth login at %s (role %s, mount %s): %w", s.c.Address(), s.cfg.K8sRole, mount, err)
	}
	return sec, nil
}

// readSecretFile reads a one-line secret, without surrounding whitespace.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}
