// Package secrets keeps every secret Tokenwarden holds in HashiCorp Vault's
// KV v2 engine: each link's current token, the grant material needed to
// (re)enroll it, webhook signing secrets, and the client secrets the
// provider catalog refers to.
//
// A link's secrets are split by who may read them (links.go): the
// internet-facing gateway reads the access token and the authorization
// request it built itself; only the worker reads refresh tokens and
// stored credentials. Each process has its own Vault identity and policy
// (deployments/vault), so a compromised gateway cannot read them either.
// Writes use KV v2 check-and-set, so two writers can never silently
// overwrite each other's rotated refresh token.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
)

var (
	// ErrNotFound means nothing is stored at the path (or it was deleted).
	ErrNotFound = errors.New("secret not found")
	// ErrVersionConflict means a check-and-set write lost: someone wrote a
	// newer version since it was read.
	ErrVersionConflict = errors.New("secret changed since it was read")
	// ErrUnavailable means Vault could not be reached or is sealed; callers
	// retry rather than give up on a link.
	ErrUnavailable = errors.New("vault unavailable")
	// ErrDenied means Vault refused the request (HTTP 403): the process's
	// Vault token expired or was revoked, or its policy lacks the path.
	// With Store.Reauth set, the Store has already logged in again once.
	ErrDenied = errors.New("vault permission denied")
)

// Store reads and writes link secrets under one path prefix of a KV v2 mount.
type Store struct {
	c      *vault.Client
	kv     *vault.KVv2
	mount  string
	prefix string

	// Reauth, when set, gives the Vault client a new token (an AppRole
	// login; cmd/tokenwarden sets it). A request refused with 403 (the
	// token expired or was revoked) logs in through it once and is sent
	// once more; only then does the caller see ErrDenied. Set it before
	// the Store is used.
	Reauth func(ctx context.Context) error

	mu    sync.Mutex
	login uint64 // counts successful Reauth calls
}

// New returns a Store for the KV v2 engine at mount, keeping everything
// below prefix (e.g. "tokenwarden").
func New(c *vault.Client, mount, prefix string) *Store {
	return &Store{c: c, kv: c.KVv2(mount), mount: mount, prefix: strings.Trim(prefix, "/")}
}

// Prefix is the path prefix below the mount.
func (s *Store) Prefix() string { return s.prefix }

// Versioned is a value read from Vault with the KV version it had, to be
// passed back as the check-and-set version of the next write.
type Versioned[T any] struct {
	Value   T
	Version int
	// Enrollment is the non-secret note an enrollment stored with a token
	// (see WriteEnrolledToken); "" for tokens written by a refresh.
	Enrollment string
}

// WebhookPath is where a tenant's webhook signing secret lives, relative
// to the mount.
func (s *Store) WebhookPath(tenant string) string {
	return s.prefix + "/webhooks/" + tenant
}

// webhookSecret is the stored shape of a webhook signing secret.
type webhookSecret struct {
	Secret string `json:"secret"`
}

// ReadWebhookSecret returns the tenant's webhook signing secret.
func (s *Store) ReadWebhookSecret(ctx context.Context, tenant string) (string, error) {
	var v webhookSecret
	if _, err := s.read(ctx, s.WebhookPath(tenant), &v); err != nil {
		return "", err
	}
	if v.Secret == "" {
		return "", fmt.Errorf("read %s: %w", s.WebhookPath(tenant), ErrNotFound)
	}
	return v.Secret, nil
}

// WriteWebhookSecret stores the tenant's webhook signing secret, replacing
// any previous one.
func (s *Store) WriteWebhookSecret(ctx context.Context, tenant, secret string) error {
	if secret == "" {
		return errors.New("write webhook secret: empty secret")
	}
	_, err := s.write(ctx, s.WebhookPath(tenant), webhookSecret{Secret: secret}, -1, nil)
	return err
}

// DeleteWebhookSecret destroys every version of the tenant's webhook
// signing secret; deleting what is already gone is not an error.
func (s *Store) DeleteWebhookSecret(ctx context.Context, tenant string) error {
	return s.destroy(ctx, s.WebhookPath(tenant))
}

// destroy deletes every version and the metadata of the secret at path;
// deleting what is already gone is not an error, so callers can retry.
func (s *Store) destroy(ctx context.Context, path string) error {
	if err := s.do(ctx, func() error { return s.kv.DeleteMetadata(ctx, path) }); err != nil && !isNotFound(err) {
		return classify("delete "+path, err)
	}
	return nil
}

// Resolve reads a client secret referenced by the provider catalog as
// "path#field" (path relative to the prefix, e.g. "providers/luca#client_secret").
func (s *Store) Resolve(ctx context.Context, ref string) (string, error) {
	path, field, ok := strings.Cut(ref, "#")
	if !ok || path == "" || field == "" {
		return "", fmt.Errorf("secret reference %q: want path#field", ref)
	}
	var sec *vault.KVSecret
	err := s.do(ctx, func() (err error) {
		sec, err = s.kv.Get(ctx, s.prefix+"/"+strings.Trim(path, "/"))
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("read %s: %w", path, ErrNotFound)
		}
		return "", classify("read "+path, err)
	}
	if sec == nil || sec.Data == nil {
		return "", fmt.Errorf("read %s: %w", path, ErrNotFound)
	}
	v, ok := sec.Data[field].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("read %s: field %q is missing or not a string", path, field)
	}
	return v, nil
}

// PutValue stores plain string fields at a path relative to the prefix,
// e.g. a provider's client secret during bootstrap.
func (s *Store) PutValue(ctx context.Context, path string, fields map[string]string) error {
	data := make(map[string]any, len(fields))
	for k, v := range fields {
		data[k] = v
	}
	if err := s.do(ctx, func() error {
		_, err := s.kv.Put(ctx, s.prefix+"/"+strings.Trim(path, "/"), data)
		return err
	}); err != nil {
		return classify("write "+path, err)
	}
	return nil
}

func (s *Store) read(ctx context.Context, path string, into any) (int, error) {
	ver, _, err := s.readFields(ctx, path, into)
	return ver, err
}

// noteField is the KV field beside "v" that holds a non-secret note
// (a token's enrollment).
const noteField = "enrollment"

// readFields decodes the "v" field of the secret at path into into and
// returns its KV version and its other string fields (notes; never
// secret).
func (s *Store) readFields(ctx context.Context, path string, into any) (int, map[string]string, error) {
	var sec *vault.KVSecret
	err := s.do(ctx, func() (err error) {
		sec, err = s.kv.Get(ctx, path)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return 0, nil, fmt.Errorf("read %s: %w", path, ErrNotFound)
		}
		return 0, nil, classify("read "+path, err)
	}
	if sec == nil || sec.Data == nil {
		return 0, nil, fmt.Errorf("read %s: %w", path, ErrNotFound)
	}
	raw, ok := sec.Data["v"].(string)
	if !ok {
		return 0, nil, fmt.Errorf("read %s: unexpected layout", path)
	}
	if err := json.Unmarshal([]byte(raw), into); err != nil {
		// The JSON error names a type, never the value: safe to wrap.
		return 0, nil, fmt.Errorf("read %s: decode: %w", path, err)
	}
	ver := 0
	if sec.VersionMetadata != nil {
		ver = sec.VersionMetadata.Version
	}
	notes := map[string]string{}
	for k, v := range sec.Data {
		if str, ok := v.(string); ok && k != "v" {
			notes[k] = str
		}
	}
	return ver, notes, nil
}

// write stores value as one JSON string field: one Vault write, and the
// shape of Token can grow without a migration. Non-empty notes (never
// secret) are stored in fields of their own.
func (s *Store) write(ctx context.Context, path string, value any, cas int, notes map[string]string) (int, error) {
	raw, err := json.Marshal(value)
	if err != nil {
		return 0, fmt.Errorf("write %s: encode: %w", path, err)
	}
	var opts []vault.KVOption
	if cas >= 0 {
		opts = append(opts, vault.WithCheckAndSet(cas))
	}
	data := map[string]any{"v": string(raw)}
	for k, v := range notes {
		if v != "" {
			data[k] = v
		}
	}
	var sec *vault.KVSecret
	err = s.do(ctx, func() (err error) {
		sec, err = s.kv.Put(ctx, path, data, opts...)
		return err
	})
	if err != nil {
		if isCASMismatch(err) {
			return 0, fmt.Errorf("write %s: %w", path, ErrVersionConflict)
		}
		return 0, classify("write "+path, err)
	}
	if sec == nil || sec.VersionMetadata == nil {
		return 0, fmt.Errorf("write %s: no version in reply", path)
	}
	return sec.VersionMetadata.Version, nil
}

// do runs one Vault request. Refused with 403 while Reauth is set, it
// logs in again (once for all requests refused with the same token) and
// sends the request once more.
func (s *Store) do(ctx context.Context, req func() error) error {
	s.mu.Lock()
	seen := s.login
	s.mu.Unlock()
	err := req()
	if err == nil || s.Reauth == nil || !isDenied(err) {
		return err
	}
	if lerr := s.reauth(ctx, seen); lerr != nil {
		return err
	}
	return req()
}

// reauth logs in again unless another request already did since seen.
func (s *Store) reauth(ctx context.Context, seen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.login != seen {
		return nil
	}
	if err := s.Reauth(ctx); err != nil {
		return err
	}
	s.login++
	return nil
}

func isDenied(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

func isNotFound(err error) bool {
	if errors.Is(err, vault.ErrSecretNotFound) {
		return true
	}
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

func isCASMismatch(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "check-and-set") {
			return true
		}
	}
	return false
}

// classify marks errors that mean "Vault is down or sealed" as
// ErrUnavailable, so callers can answer 503 and retry. Vault's own error
// text names paths and reasons, never secret values.
func classify(op string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		if re.StatusCode == http.StatusServiceUnavailable || re.StatusCode >= 500 {
			return fmt.Errorf("%s: %w (HTTP %d)", op, ErrUnavailable, re.StatusCode)
		}
		if re.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%s: %w (HTTP 403)", op, ErrDenied)
		}
		return fmt.Errorf("%s: vault: HTTP %d: %s", op, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	// Anything else is a transport failure: connection refused, reset, timeout.
	return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
}
