package secrets

import (
	"context"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Bounds of the pause between failed logins in Keep: a Vault outage must
// not turn into a login storm, and a recovered Vault must be used soon.
const (
	reloginMinBackoff = time.Second
	reloginMaxBackoff = 30 * time.Second
)

// Keep keeps the session's token alive until ctx ends: it renews the
// token while Vault allows (vault's LifetimeWatcher, at about two thirds
// of each lease), and when the token reaches its maximum TTL or stops
// renewing, logs in again (AppRole, Kubernetes) or, for a static token,
// logs loudly before and when it expires. Run it in its own goroutine.
func (s *Session) Keep(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		sec := s.current
		s.mu.Unlock()
		if sec == nil {
			return // a static token that never expires, or one Vault told us nothing about
		}
		if !s.watch(ctx, sec) {
			continue // replaced by Reauth, or ctx ended
		}
		if s.Method() == AuthToken {
			s.staticEnding(ctx)
			return
		}
		s.reloginUntilDone(ctx)
	}
}

// watch renews sec's token until its life ends (true) or the token is
// replaced or ctx ends (false). A renewal that Vault cut short (the
// token's maximum TTL is near) ends it at half of what is left, so that
// the next login has time to spare; the watcher alone would wait until a
// tenth or so of the last lease is left.
func (s *Session) watch(ctx context.Context, sec *vault.Secret) bool {
	w, err := s.c.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: sec})
	if err != nil {
		s.log.Error("vault: cannot watch the token's lifetime; it will not be renewed", "error", err.Error())
		return true
	}
	go w.Start()
	defer w.Stop()
	full := time.Duration(sec.Auth.LeaseDuration) * time.Second
	var last <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.relogged:
			return false
		case <-last:
			return true
		case r := <-w.RenewCh():
			if r == nil || r.Secret == nil || r.Secret.Auth == nil {
				continue
			}
			lease := time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
			s.log.Debug("vault token renewed", "method", s.Method(), "ttl", lease)
			if lease < full && last == nil {
				last = time.After(lease / 2)
			}
		case err := <-w.DoneCh():
			if err != nil {
				s.log.Warn("vault: renewing the token failed", "method", s.Method(), "error", err.Error())
			}
			return true
		}
	}
}

// reloginUntilDone logs in again, retrying with backoff until it works or
// ctx ends. The Store's Reauth also logs in on a 403 meanwhile.
func (s *Session) reloginUntilDone(ctx context.Context) {
	wait := reloginMinBackoff
	for {
		err := s.login(ctx)
		if err == nil {
			s.log.Info("vault: the token reached the end of its life; logged in again", "method", s.Method())
			// A Reauth that ran meanwhile is already covered by this login.
			select {
			case <-s.relogged:
			default:
			}
			return
		}
		s.log.Error("vault: logging in again failed; retrying", "method", s.Method(), "in", wait, "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, reloginMaxBackoff)
	}
}

// lookupStatic asks Vault about a static token: nil when it never
// expires, belongs to a Vault agent, or may not look itself up; else what
// Keep watches.
func (s *Session) lookupStatic(ctx context.Context) *vault.Secret {
	info, err := s.c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil || info == nil {
		s.log.Warn("vault: VAULT_TOKEN cannot look itself up (policy default lacks auth/token/lookup-self?); it is used as is, never renewed",
			"error", errText(err))
		return nil
	}
	if id, _ := info.Data["id"].(string); id != "" && id != s.cfg.Token {
		// A Vault agent with use_auto_auth_token=force answered about
		// its own token (the Helm chart's agentInjector mode): the agent
		// keeps that one alive.
		return nil
	}
	ttl, _ := info.TokenTTL()
	if ttl <= 0 {
		return nil
	}
	renewable, _ := info.TokenIsRenewable()
	if !renewable {
		s.log.Warn("vault: VAULT_TOKEN is not renewable; the process cannot use Vault after it expires (prefer AppRole or Kubernetes auth)",
			"expires_at", time.Now().Add(ttl).UTC().Format(time.RFC3339))
	}
	return &vault.Secret{Auth: &vault.SecretAuth{ClientToken: s.cfg.Token, Renewable: renewable, LeaseDuration: int(ttl / time.Second)}}
}

// staticEnding logs, loudly, that a static token is about to expire and
// cannot be renewed, and again when it has expired.
func (s *Session) staticEnding(ctx context.Context) {
	info, err := s.c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil || info == nil {
		s.log.Error("vault: VAULT_TOKEN can no longer be renewed or looked up; Vault refuses every request once it expires: "+
			"restart the process with a new token, or use AppRole or Kubernetes auth", "error", errText(err))
		return
	}
	ttl, _ := info.TokenTTL()
	s.log.Error("vault: VAULT_TOKEN cannot be renewed any further and expires soon; restart the process with a new token, "+
		"or use AppRole or Kubernetes auth", "expires_at", time.Now().Add(ttl).UTC().Format(time.RFC3339), "in", ttl.Round(time.Second))
	select {
	case <-ctx.Done():
		return
	case <-time.After(ttl):
	}
	s.log.Error("vault: VAULT_TOKEN has expired; Vault refuses every request until the process restarts with a new token")
}

func errText(err error) string {
	if err == nil {
		return "no reply"
	}
	return err.Error()
}
