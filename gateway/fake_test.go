package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
)

// fakeProvider is an in-memory OAuth provider. Grant params steer it:
// "lifetime" (a Go duration) sets the first token's lifetime and
// "fail_refresh" makes every refresh fail with invalid_grant.
type fakeProvider struct {
	mu        sync.Mutex
	exchanges []providers.Grant
	refreshes int
	verifies  int
	// rejectVerify makes Verify turn every token down.
	rejectVerify bool
}

var _ providers.Verifier = (*fakeProvider)(nil)

const fakeAuthURL = "https://fake.example/authorize"

var fakeEntry = providers.Entry{
	Name:          "fake",
	Kind:          "fake",
	ClientID:      "client-1",
	Grants:        []string{providers.GrantAuthorizationCode, providers.GrantClientCredentials, providers.GrantPassword, providers.GrantDeviceCode},
	PKCE:          true,
	AllowedParams: []string{"lifetime", "fail_refresh", "locale"},
	Schedule:      providers.DefaultSchedule(),
}

// narrowEntry offers one grant only, for unsupported_grant.
var narrowEntry = providers.Entry{
	Name:     "narrow",
	Kind:     "fake",
	ClientID: "client-2",
	Grants:   []string{providers.GrantClientCredentials},
	Schedule: providers.DefaultSchedule(),
}

func randomSecret(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (p *fakeProvider) Exchange(ctx context.Context, g providers.Grant) (*providers.Token, error) {
	p.mu.Lock()
	p.exchanges = append(p.exchanges, g)
	p.mu.Unlock()
	switch g.Type {
	case providers.GrantAuthorizationCode:
		if g.Code == "" || g.CodeVerifier == "" {
			return nil, &providers.Error{Class: providers.InvalidGrant, Op: "exchange", Code: "invalid_grant"}
		}
	case providers.GrantPassword:
		if g.Username == "" || g.Password == "" {
			return nil, &providers.Error{Class: providers.InvalidGrant, Op: "exchange", Code: "invalid_grant"}
		}
	case providers.GrantDeviceCode:
		return nil, &providers.Error{Class: providers.Transient, Op: "exchange", Code: "authorization_pending",
			Err: providers.ErrAuthorizationPending}
	}
	lifetime := time.Hour
	if d, err := time.ParseDuration(g.Params["lifetime"]); err == nil {
		lifetime = d
	}
	extra := map[string]string{}
	if g.Params["fail_refresh"] != "" {
		extra["fail_refresh"] = "1"
	}
	return &providers.Token{
		AccessToken:  randomSecret("at-"),
		RefreshToken: randomSecret("rt-"),
		TokenType:    "Bearer",
		Expiry:       time.Now().Add(lifetime),
		Scopes:       g.Scopes,
		Extra:        extra,
	}, nil
}

func (p *fakeProvider) Refresh(ctx context.Context, t *providers.Token) (*providers.Token, error) {
	p.mu.Lock()
	p.refreshes++
	p.mu.Unlock()
	if t.Extra["fail_refresh"] != "" {
		return nil, &providers.Error{Class: providers.InvalidGrant, Op: "refresh", Status: 400, Code: "invalid_grant"}
	}
	n := *t
	n.AccessToken = randomSecret("at-")
	n.Expiry = time.Now().Add(time.Hour)
	return &n, nil
}

func (p *fakeProvider) AuthCodeURL(state, verifier, redirectURL string, scopes []string, params map[string]string) (string, error) {
	if verifier == "" {
		return "", errors.New("no verifier")
	}
	v := url.Values{"state": {state}, "redirect_uri": {redirectURL}, "code_challenge": {"x"}}
	if len(scopes) > 0 {
		v.Set("scope", strings.Join(scopes, " "))
	}
	return fakeAuthURL + "?" + v.Encode(), nil
}

func (p *fakeProvider) DeviceAuth(ctx context.Context, scopes []string) (*providers.DeviceAuth, error) {
	return &providers.DeviceAuth{
		DeviceCode:      randomSecret("dc-"),
		UserCode:        "WDJB-MJHT",
		VerificationURI: "https://fake.example/device",
		Expiry:          time.Now().Add(10 * time.Minute),
		Interval:        time.Hour,
	}, nil
}

// Verify accepts the access tokens the fake issues ("at-..."), unless
// rejectVerify is set.
func (p *fakeProvider) Verify(ctx context.Context, t *providers.Token) error {
	p.mu.Lock()
	p.verifies++
	reject := p.rejectVerify
	p.mu.Unlock()
	if t == nil || t.AccessToken == "" {
		return &providers.Error{Class: providers.InvalidGrant, Op: "verify", Err: errors.New("no access token")}
	}
	if reject || !strings.HasPrefix(t.AccessToken, "at-") {
		return &providers.Error{Class: providers.InvalidGrant, Op: "verify", Status: 401, Code: "invalid_token",
			Description: "access token not accepted"}
	}
	return nil
}

func (p *fakeProvider) setRejectVerify(reject bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rejectVerify = reject
}

func (p *fakeProvider) verifyCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verifies
}

func (p *fakeProvider) lastExchange() (providers.Grant, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.exchanges) == 0 {
		return providers.Grant{}, 0
	}
	return p.exchanges[len(p.exchanges)-1], len(p.exchanges)
}

func (p *fakeProvider) refreshCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes
}

// plainProvider has no optional capability.
type plainProvider struct{}

func (plainProvider) Exchange(context.Context, providers.Grant) (*providers.Token, error) {
	return nil, errors.New("not used")
}
func (plainProvider) Refresh(context.Context, *providers.Token) (*providers.Token, error) {
	return nil, errors.New("not used")
}

func newFakeRegistry() (*providers.Registry, *fakeProvider) {
	reg := providers.NewRegistry()
	fp := &fakeProvider{}
	if err := reg.Add(fakeEntry, fp); err != nil {
		panic(err)
	}
	if err := reg.Add(narrowEntry, plainProvider{}); err != nil {
		panic(err)
	}
	return reg, fp
}

// memStore is an in-memory linkStore for tests that need no database.
type memStore struct {
	mu     sync.Mutex
	keys   map[string]store.APIKey
	links  map[string]store.Link
	states map[[32]byte]store.OAuthState
}

func newMemStore() *memStore {
	return &memStore{keys: map[string]store.APIKey{}, links: map[string]store.Link{}, states: map[[32]byte]store.OAuthState{}}
}

func (m *memStore) LookupAPIKey(ctx context.Context, plaintext string) (store.APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[plaintext]
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	return k, nil
}

func (m *memStore) CreateLink(ctx context.Context, l store.Link) (store.Link, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.IdempotencyKey != "" {
		for _, e := range m.links {
			if e.TenantID == l.TenantID && e.IdempotencyKey == l.IdempotencyKey {
				if e.RequestHash == nil && (e.Provider != l.Provider || e.UserID != l.UserID || e.GrantType != l.GrantType) {
					return store.Link{}, false, store.ErrIdempotencyConflict
				}
				return e, false, nil
			}
		}
	}
	l.CreatedAt, l.UpdatedAt = time.Now(), time.Now()
	m.links[l.TenantID+"/"+l.ID] = l
	return l, true, nil
}

func (m *memStore) GetLink(ctx context.Context, tenantID, id string) (store.Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[tenantID+"/"+id]
	if !ok {
		return store.Link{}, store.ErrNotFound
	}
	return l, nil
}

func (m *memStore) ListLinks(ctx context.Context, tenantID string, f store.ListFilter) ([]store.Link, string, error) {
	if f.Cursor != "" {
		return nil, "", store.ErrBadCursor
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Link
	for _, l := range m.links {
		if l.TenantID == tenantID {
			out = append(out, l)
		}
	}
	return out, "", nil
}

func (m *memStore) PutOAuthState(ctx context.Context, state string, st store.OAuthState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[sha256.Sum256([]byte(state))] = st
	return nil
}

func (m *memStore) ConsumeOAuthState(ctx context.Context, state string, now time.Time) (store.OAuthState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := sha256.Sum256([]byte(state))
	st, ok := m.states[h]
	switch {
	case !ok:
		return st, store.ErrNotFound
	case st.UsedAt != nil:
		return st, store.ErrStateUsed
	case !now.Before(st.ExpiresAt):
		return st, store.ErrStateExpired
	}
	st.UsedAt = &now
	m.states[h] = st
	return st, nil
}

func (m *memStore) RecordTransition(ctx context.Context, st store.LinkState, e store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[st.TenantID+"/"+st.LinkID]
	if !ok {
		return store.ErrNotFound
	}
	l.Status = st.Status
	m.links[st.TenantID+"/"+st.LinkID] = l
	return nil
}

// memSecrets is an in-memory secretStore.
type memSecrets struct {
	mu     sync.Mutex
	down   bool
	tokens map[string]secrets.Versioned[providers.Token]
	grants map[string]secrets.Versioned[providers.Grant]
}

func newMemSecrets() *memSecrets {
	return &memSecrets{tokens: map[string]secrets.Versioned[providers.Token]{}, grants: map[string]secrets.Versioned[providers.Grant]{}}
}

func (m *memSecrets) TokenPath(tenant, link string) string { return "tokens/" + tenant + "/" + link }

func (m *memSecrets) ReadToken(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Token], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return secrets.Versioned[providers.Token]{}, errors.Join(errors.New("read token"), secrets.ErrUnavailable)
	}
	t, ok := m.tokens[tenant+"/"+link]
	if !ok {
		return t, secrets.ErrNotFound
	}
	return t, nil
}

// ReadAccessToken is the gateway's read; the fake keeps whole tokens.
func (m *memSecrets) ReadAccessToken(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Token], error) {
	return m.ReadToken(ctx, tenant, link)
}

// ReadGrantRequest is the gateway's read of a grant: without the
// credentials, as *secrets.Store gives it.
func (m *memSecrets) ReadGrantRequest(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Grant], error) {
	g, err := m.ReadGrant(ctx, tenant, link)
	g.Value.Code, g.Value.Username, g.Value.Password, g.Value.DeviceCode = "", "", "", ""
	return g, err
}

func (m *memSecrets) ReadGrant(ctx context.Context, tenant, link string) (secrets.Versioned[providers.Grant], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[tenant+"/"+link]
	if !ok {
		return g, secrets.ErrNotFound
	}
	return g, nil
}

func (m *memSecrets) WriteGrant(ctx context.Context, tenant, link string, g providers.Grant, cas int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.grants[tenant+"/"+link]
	if cas >= 0 && cas != cur.Version {
		return 0, secrets.ErrVersionConflict
	}
	m.grants[tenant+"/"+link] = secrets.Versioned[providers.Grant]{Value: g, Version: cur.Version + 1}
	return cur.Version + 1, nil
}

func (m *memSecrets) DeleteLink(ctx context.Context, tenant, link string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, tenant+"/"+link)
	delete(m.grants, tenant+"/"+link)
	return nil
}

// memTemporal accepts workflow starts and signals; everything else of
// client.Client is left nil and must not be reached.
type memTemporal struct {
	client.Client
	mu      sync.Mutex
	started []client.StartWorkflowOptions
	// updateErr is what every update's outcome is (nil: success).
	updateErr error
	updates   int
	// signals are the arguments of the signals sent, by name.
	signals map[string][]any
}

func (m *memTemporal) UpdateWorkflow(ctx context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updates++
	return memUpdate{err: m.updateErr}, nil
}

// memUpdate is a finished update.
type memUpdate struct{ err error }

func (memUpdate) WorkflowID() string                     { return "" }
func (memUpdate) RunID() string                          { return "" }
func (memUpdate) UpdateID() string                       { return "" }
func (u memUpdate) Get(ctx context.Context, _ any) error { return u.err }

func (m *memTemporal) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started = append(m.started, o)
	return nil, nil
}

func (m *memTemporal) SignalWorkflow(ctx context.Context, id, runID, name string, arg any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signals == nil {
		m.signals = map[string][]any{}
	}
	m.signals[name] = append(m.signals[name], arg)
	return nil
}
