package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

// DefaultHTTPTimeout bounds a provider call when Open is given a client
// without a timeout. A hung token endpoint must fail the activity, not
// hold it until Temporal's heartbeat timeout.
const DefaultHTTPTimeout = 30 * time.Second

// openParallel is how many providers open at once: discovery waits on
// the network, and a catalog of a dozen issuers should boot in seconds.
const openParallel = 4

// Registry is the set of opened providers, by name. It is safe for
// concurrent use. A registry from Catalog.Open re-opens a provider when
// one of its client secrets changes in Vault (reload.go); Get always
// returns the current one.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]registered
}

type registered struct {
	p Provider
	e Entry
	// inst is the opening p came from and src how to open it again; both
	// nil for providers added with Add.
	inst *instance
	src  *source
}

// NewRegistry returns an empty registry; Add fills it. Catalog.Open is
// the usual way to get one; this is for tests and for embedding fakes.
func NewRegistry() *Registry { return &Registry{entries: map[string]registered{}} }

// Add registers p under e.Name. Adding a name twice is an error.
func (r *Registry) Add(e Entry, p Provider) error {
	return r.add(registered{p: p, e: e})
}

func (r *Registry) add(reg registered) error {
	if reg.p == nil {
		return fmt.Errorf("provider %q: nil provider", reg.e.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.entries[reg.e.Name]; dup {
		return fmt.Errorf("provider %q: already registered", reg.e.Name)
	}
	r.entries[reg.e.Name] = reg
	return nil
}

// Get returns the provider called name and its entry.
func (r *Registry) Get(name string) (Provider, Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.entries[name]
	return reg.p, reg.e, ok
}

// Entries returns every entry, sorted by name.
func (r *Registry) Entries() []Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Entry, 0, len(r.entries))
	for _, reg := range r.entries {
		out = append(out, reg.e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// EndpointReporter is an optional Provider capability: the endpoints it
// ended up with after discovery. The registry shows those in its entries.
type EndpointReporter interface {
	Endpoint() Endpoint
}

// Open resolves client secrets and builds every provider, running OIDC
// discovery where the kind asks for it. resolve is called for Vault
// references only (env and value ones are read here) and may be nil for
// a catalog without any. client is used for every provider call; nil
// means a client with DefaultHTTPTimeout. Every entry that fails is
// reported in one *CatalogError. The registry keeps resolve to open a
// provider again when its Vault secrets change (reload.go).
func (c *Catalog) Open(ctx context.Context, resolve Resolver, client *http.Client) (*Registry, error) {
	if client == nil {
		client = &http.Client{Timeout: DefaultHTTPTimeout}
	} else if client.Timeout == 0 {
		cp := *client
		cp.Timeout = DefaultHTTPTimeout
		client = &cp
	}
	reg := NewRegistry()
	problems := make([]string, len(c.entries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, openParallel)
	for i, ce := range c.entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			src := &source{ce: ce, vault: resolve, client: client}
			if err := reg.openEntry(ctx, src); err != nil {
				problems[i] = fmt.Sprintf("provider %q: %v", ce.Name, err)
			}
		}()
	}
	wg.Wait()
	var list []string
	for _, p := range problems {
		if p != "" {
			list = append(list, p)
		}
	}
	if len(list) > 0 {
		return nil, &CatalogError{Problems: list}
	}
	return reg, nil
}

// openEntry opens src's entry for the first time and registers it.
func (r *Registry) openEntry(ctx context.Context, src *source) error {
	inst, e, err := r.open(ctx, src)
	if err != nil {
		return err
	}
	return r.add(registered{p: inst.p, e: e, inst: inst, src: src})
}

// open builds a provider from src: resolves its secrets (remembering the
// Vault ones, to notice when they change) and lets the kind open it with
// an HTTP client that watches for a rejected client secret.
func (r *Registry) open(ctx context.Context, src *source) (*instance, Entry, error) {
	ce := src.ce
	if ce.config == nil {
		return nil, Entry{}, errors.New("no kind config")
	}
	inst := &instance{vaultValues: map[string]string{}}
	resolve := func(ctx context.Context, ref SecretRef) (string, error) {
		v, err := ResolveSecret(ctx, ref, src.vault)
		if err == nil && ref.Vault != "" {
			inst.remember(ref.Vault, v)
		}
		return v, err
	}
	secret, err := resolve(ctx, ce.ClientSecret)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("client secret %s: %w", ce.ClientSecret, err)
	}
	client := *src.client
	client.Transport = &rejectWatch{base: src.client.Transport, rejected: func(ctx context.Context) bool {
		return r.clientRejected(ctx, ce.Name, inst)
	}}
	p, err := ce.config.Open(ctx, ce.Entry, Setup{ClientSecret: secret, HTTPClient: &client, Resolve: resolve})
	if err != nil {
		return nil, Entry{}, err
	}
	if p == nil {
		return nil, Entry{}, errors.New("nil provider")
	}
	inst.p = p
	e := ce.Entry
	if er, ok := p.(EndpointReporter); ok {
		e.Endpoint = er.Endpoint()
	}
	return inst, e, nil
}

// ResolveSecret reads ref: the value of an inline reference, the
// environment variable of an env one, and vault (which may be nil when
// no Vault reference is used) for the rest. A zero ref gives "".
func ResolveSecret(ctx context.Context, ref SecretRef, vault Resolver) (string, error) {
	switch {
	case ref.Value != "":
		return ref.Value, nil
	case ref.Env != "":
		v, ok := os.LookupEnv(ref.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", ref.Env)
		}
		return v, nil
	case ref.Vault != "":
		if vault == nil {
			return "", errors.New("no Vault resolver configured")
		}
		return vault(ctx, ref)
	}
	return "", nil
}
