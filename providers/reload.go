package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Client secrets rotate: an operator writes the new one to Vault, and the
// engine must use it without a restart. A provider holds the secret it
// was opened with, so the registry re-opens the provider with the new
// secret and swaps it in; Get returns the new one from then on, and a
// call already under way finishes with the old one.
//
// The registry looks at Vault (every Vault reference the entry resolved
// when it opened):
//   - every interval, by WatchSecrets (DefaultSecretReloadInterval);
//   - at once when a provider answers invalid_client, at most once per
//     rejectRecheckInterval per provider. If a newer secret is then in
//     place, that answer reaches the caller as a transient failure (503
//     temporarily_unavailable) rather than a permanent one: the request
//     was sent with a secret that is no longer current, so the link is
//     retried with the new secret instead of being sent to re-consent.

// DefaultSecretReloadInterval is how often WatchSecrets looks at Vault.
const DefaultSecretReloadInterval = 60 * time.Second

// rejectRecheckInterval bounds the Vault reads a provider rejecting the
// client over and over can cause: one a second per provider is nothing
// for Vault, and a secret written to Vault a moment after the provider
// changed it is found before many more requests fail.
const rejectRecheckInterval = time.Second

// maxRejectBody is how much of a 400 or 401 answer is read to look for
// invalid_client; error replies are small, and the rest is passed on.
const maxRejectBody = 8 << 10

// source is how to open an entry again: its catalog entry, the Vault
// resolver and the HTTP client Open was given.
type source struct {
	ce     catalogEntry
	vault  Resolver
	client *http.Client

	// reload serializes re-opening the entry; lastRejectCheck is when
	// a rejection last had Vault read (under reload).
	reload          sync.Mutex
	lastRejectCheck time.Time
}

// instance is one opening of a provider, with the Vault secrets it got.
type instance struct {
	p           Provider
	mu          sync.Mutex
	vaultValues map[string]string // Vault reference -> value used
}

func (i *instance) remember(ref, v string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.vaultValues[ref] = v
}

func (i *instance) refs() map[string]string {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make(map[string]string, len(i.vaultValues))
	for k, v := range i.vaultValues {
		out[k] = v
	}
	return out
}

// current returns the registration of name.
func (r *Registry) current(name string) (registered, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.entries[name]
	return reg, ok
}

// ReloadSecrets reads every Vault secret the providers were opened with
// and re-opens each provider whose secrets changed. It returns the names
// of the providers replaced; a provider that fails to re-open (Vault
// down, discovery failing) keeps its current secret and is named in the
// error.
func (r *Registry) ReloadSecrets(ctx context.Context) (changed []string, err error) {
	var errs []error
	for _, e := range r.Entries() {
		reg, ok := r.current(e.Name)
		if !ok || reg.src == nil {
			continue
		}
		reg.src.reload.Lock()
		swapped, rerr := r.reloadLocked(ctx, e.Name, reg.src)
		reg.src.reload.Unlock()
		if rerr != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", e.Name, rerr))
		}
		if swapped {
			changed = append(changed, e.Name)
		}
	}
	return changed, errors.Join(errs...)
}

// WatchSecrets calls ReloadSecrets every interval (DefaultSecretReloadInterval
// when not positive) until ctx ends, logging what changed and what failed.
func (r *Registry) WatchSecrets(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	if interval <= 0 {
		interval = DefaultSecretReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := r.ReloadSecrets(ctx)
		for _, name := range changed {
			logger.Info("provider client secret changed in Vault; the provider now uses the new one", "provider", name)
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("provider client secrets: re-reading Vault failed; the current secrets stay in use", "error", err.Error())
		}
	}
}

// reloadLocked re-reads the Vault secrets of name's current provider and,
// when one changed, opens the provider again and swaps it in. The caller
// holds src.reload.
func (r *Registry) reloadLocked(ctx context.Context, name string, src *source) (bool, error) {
	reg, ok := r.current(name)
	if !ok || reg.inst == nil {
		return false, nil
	}
	changed := false
	for ref, old := range reg.inst.refs() {
		v, err := ResolveSecret(ctx, SecretRef{Vault: ref}, src.vault)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", ref, err)
		}
		changed = changed || v != old
	}
	if !changed {
		return false, nil
	}
	inst, e, err := r.open(ctx, src)
	if err != nil {
		return false, fmt.Errorf("open with the secret changed in Vault: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries[name].inst != reg.inst {
		return false, nil
	}
	r.entries[name] = registered{p: inst.p, e: e, inst: inst, src: src}
	return true, nil
}

// clientRejected is called when the provider opened as inst answered
// invalid_client. It reports whether a newer secret is in place (already,
// or after reading Vault now), so that the request is worth sending again.
func (r *Registry) clientRejected(ctx context.Context, name string, inst *instance) bool {
	reg, ok := r.current(name)
	if !ok || reg.src == nil {
		return false
	}
	if reg.inst != inst {
		return true
	}
	reg.src.reload.Lock()
	defer reg.src.reload.Unlock()
	if cur, _ := r.current(name); cur.inst != inst {
		return true // re-opened while this request waited
	}
	if time.Since(reg.src.lastRejectCheck) < rejectRecheckInterval {
		return false
	}
	reg.src.lastRejectCheck = time.Now()
	swapped, _ := r.reloadLocked(ctx, name, reg.src)
	return swapped
}

// rejectWatch is the transport of a provider opened from the catalog: it
// tells the registry when the provider rejects the client (invalid_client)
// and, when the registry has a newer secret, turns the answer into a
// transient one.
type rejectWatch struct {
	base     http.RoundTripper
	rejected func(ctx context.Context) bool
}

func (t *rejectWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil || (resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized) {
		return resp, err
	}
	head, rerr := io.ReadAll(io.LimitReader(resp.Body, maxRejectBody))
	rest := resp.Body
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(head), rest), rest}
	if rerr != nil || !invalidClient(resp.Header.Get("Content-Type"), head) || !t.rejected(req.Context()) {
		return resp, nil
	}
	_ = rest.Close()
	return secretReloaded(req), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// invalidClient reports whether an error reply carries the RFC 6749 error
// code invalid_client, as JSON or as a form.
func invalidClient(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("error") == "invalid_client" {
			return true
		}
	}
	var f struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(body, &f) != nil {
		return false
	}
	code, _ := f.Error.(string)
	return code == "invalid_client"
}

// secretReloadedBody is the answer of a request sent with a client secret
// that has since been replaced: RFC 6749 temporarily_unavailable, which
// every kind reads as transient.
const secretReloadedBody = `{"error":"temporarily_unavailable","error_description":"the provider rejected the client secret; a newer one was loaded from Vault, try again"}`

func secretReloaded(req *http.Request) *http.Response {
	return &http.Response{
		Status:        "503 Service Unavailable",
		StatusCode:    http.StatusServiceUnavailable,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(secretReloadedBody)),
		ContentLength: int64(len(secretReloadedBody)),
		Request:       req,
	}
}
