package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/oauth2"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/store"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// Linker creates links the way the gateway does, without the gateway: a
// links row, the grant material in Vault, and the link's workflow. A
// harness on the shared stack gets one from Stack.Linker; one on a
// private stack fills it in with its own clients.
type Linker struct {
	T        testing.TB
	Store    *store.Store
	Secrets  *secrets.Store
	Temporal client.Client
	Registry *providers.Registry
	// Remember, if set, is given the secrets a link's creation handles
	// (see Stack.Remember).
	Remember func(secrets ...string)
	// Label, if set, names each new link's recorded history after its
	// grant type (see Stack.Label).
	Label func(linkID, label string)
	// MaxCyclesPerRun, if set, is the links' continue-as-new period, for
	// tests that must cross run boundaries quickly.
	MaxCyclesPerRun int
}

// Linker is a Linker on the stack that remembers secrets and labels links.
func (s *Stack) Linker() Linker {
	return Linker{T: s.T, Store: s.Store, Secrets: s.Secrets, Temporal: s.Temporal, Registry: s.Registry,
		Remember: s.Remember, Label: s.Label}
}

// CreateLinkDirect creates a link of the user alice at provider as the
// gateway does (see Linker.CreateLink) and returns its id.
func (s *Stack) CreateLinkDirect(ctx context.Context, provider, grantType string, g providers.Grant) string {
	s.T.Helper()
	return s.Linker().CreateLink(ctx, provider, grantType, g)
}

// CreateLink creates a link of the user alice at provider: a links row,
// the grant material g in Vault, and the link's workflow, started with its
// search attributes. It returns the link's id.
func (l Linker) CreateLink(ctx context.Context, provider, grantType string, g providers.Grant) string {
	l.T.Helper()
	id := store.NewLinkID()
	if _, _, err := l.Store.CreateLink(ctx, store.Link{ID: id, TenantID: Tenant, Provider: provider, UserID: "alice",
		GrantType: grantType, Status: "pending", VaultPath: l.Secrets.TokenPath(Tenant, id)}); err != nil {
		l.T.Fatalf("create link: %v", err)
	}
	g.Type = grantType
	if l.Label != nil {
		l.Label(id, grantType)
	}
	if _, err := l.Secrets.WriteGrant(ctx, Tenant, id, g, -1); err != nil {
		l.T.Fatalf("write grant: %v", err)
	}
	_, err := l.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(Tenant, id),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            workflows.StaticSummary(Tenant, id, provider, grantType, "alice"),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.TenantKey.ValueSet(Tenant), workflows.ProviderKey.ValueSet(provider),
			workflows.LinkIDKey.ValueSet(id), workflows.StatusKey.ValueSet("pending")),
	}, "Link", workflows.LinkParams{TenantID: Tenant, LinkID: id, Provider: provider, GrantType: grantType, Scopes: g.Scopes,
		MaxCyclesPerRun: l.MaxCyclesPerRun})
	if err != nil {
		l.T.Fatalf("start workflow: %v", err)
	}
	return id
}

// CreateAuthCodeLink creates an authorization-code link at the provider
// "peer", drives peer's login and consent pages as alice, and hands the
// code to the workflow, as the gateway's callback does. It returns the
// link's id.
func (l Linker) CreateAuthCodeLink(ctx context.Context, peer *oidcpeer.Peer) string {
	l.T.Helper()
	p, _, _ := l.Registry.Get("peer")
	verifier := oauth2.GenerateVerifier()
	state := randomString()
	redirect := "http://127.0.0.1/v1/oauth/callback"
	scopes := []string{"openid", "offline_access"}
	l.remember(verifier)
	id := l.CreateLink(ctx, "peer", providers.GrantAuthorizationCode, providers.Grant{CodeVerifier: verifier, RedirectURL: redirect, Scopes: scopes})
	authURL, err := p.(providers.Authorizer).AuthCodeURL(state, verifier, redirect, scopes, nil)
	if err != nil {
		l.T.Fatalf("auth URL: %v", err)
	}
	back, err := peer.Login(ctx, authURL, "alice")
	if err != nil {
		l.T.Fatalf("login at the peer: %v", err)
	}
	if back.Query().Get("state") != state {
		l.T.Fatalf("state did not round-trip")
	}
	code := back.Query().Get("code")
	l.remember(code)
	g, err := l.Secrets.ReadGrant(ctx, Tenant, id)
	if err != nil {
		l.T.Fatal(err)
	}
	g.Value.Code = code
	if _, err := l.Secrets.WriteGrant(ctx, Tenant, id, g.Value, g.Version); err != nil {
		l.T.Fatal(err)
	}
	if err := l.Temporal.SignalWorkflow(ctx, workflows.WorkflowID(Tenant, id), "", workflows.SignalAuthorized, nil); err != nil {
		l.T.Fatal(err)
	}
	return id
}

func (l Linker) remember(secrets ...string) {
	if l.Remember != nil {
		l.Remember(secrets...)
	}
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
