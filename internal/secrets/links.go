package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tokenwarden/tokenwarden/providers"
)

// A link's secrets are four KV v2 secrets under <prefix>/links/<tenant>/<link>/,
// split by who may read them. The Vault policies in deployments/vault
// grant these paths, so the split holds even against a compromised
// gateway:
//
//	access   what a token answer needs: the access token, its type,
//	         expiry, scopes and extras (accessPart), and the version of
//	         the refresh secret it was copied from. The gateway reads it:
//	         a token read stays one Vault read.
//	refresh  the whole token, refresh and ID token included, and its
//	         enrollment note. Only the worker reads it. It repeats the
//	         access part, so the worker reads one consistent secret.
//	request  the grant without its credentials (requestPart): type,
//	         scopes, params, PKCE verifier, nonce, redirect URI. The
//	         gateway built it and reads it back (a replayed creation, a
//	         re-authorization, the callback completing it with the code).
//	grant    the whole grant material, passwords, codes and device codes
//	         included. The gateway writes it; only the worker reads it.
const (
	partAccess  = "access"
	partRefresh = "refresh"
	partRequest = "request"
	partGrant   = "grant"
)

// tokenVersionField is the field of the access secret holding the KV
// version of the refresh secret it was copied from. A token's version
// (Versioned.Version) is that one counter wherever it is read, so the
// version a gateway saw (workflows.RefreshRequest.SeenVersion) and the one
// the workflow knows compare.
const tokenVersionField = "token_version"

func (s *Store) linkPath(tenant, link, part string) string {
	return s.prefix + "/links/" + tenant + "/" + link + "/" + part
}

// TokenPath is where the gateway reads a link's access token, relative to
// the mount.
func (s *Store) TokenPath(tenant, link string) string {
	return s.linkPath(tenant, link, partAccess)
}

// accessPart is what the gateway may read of t. Fields are copied by
// name, so a field added to Token stays worker-only until it is added
// here (TestTokenFieldsAreSorted makes that a decision).
func accessPart(t providers.Token) providers.Token {
	return providers.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry,
		IssuedAt: t.IssuedAt, Scopes: t.Scopes, Extra: t.Extra}
}

// requestPart is g without the credentials only the worker may read. The
// gateway needs everything else it put there, whatever a provider kind
// adds (TestGrantFieldsAreSorted keeps new credentials out).
func requestPart(g providers.Grant) providers.Grant {
	g.Code, g.Username, g.Password, g.DeviceCode = "", "", "", ""
	return g
}

// ReadAccessToken returns the part of a link's token the gateway may
// read (accessPart), with the token's version. This is the gateway's hot
// path: one Vault read.
func (s *Store) ReadAccessToken(ctx context.Context, tenant, link string) (Versioned[providers.Token], error) {
	var v Versioned[providers.Token]
	_, notes, err := s.readFields(ctx, s.TokenPath(tenant, link), &v.Value)
	// Every write sets the version; without one (0), a caller asking the
	// workflow for a fresher token only loses the shortcut of naming the
	// version it saw.
	v.Version, _ = strconv.Atoi(notes[tokenVersionField])
	return v, err
}

// ReadToken returns a link's whole token, refresh token included: the
// worker's read. A link still in the earlier layout is moved first
// (migrateLink). Should a crash between the two writes of WriteToken have
// left the access secret behind, it is brought up to date before the
// token is returned, so that whatever the worker then does (adopt the
// token, refresh it, revoke it) the gateway reads the same token.
func (s *Store) ReadToken(ctx context.Context, tenant, link string) (Versioned[providers.Token], error) {
	v, err := s.readRefresh(ctx, tenant, link)
	if errors.Is(err, ErrNotFound) {
		moved, merr := s.migrateLink(ctx, tenant, link)
		if merr != nil {
			return v, merr
		}
		if moved {
			v, err = s.readRefresh(ctx, tenant, link)
		}
	}
	if err != nil {
		return v, err
	}
	return v, s.syncAccess(ctx, tenant, link, v)
}

func (s *Store) readRefresh(ctx context.Context, tenant, link string) (Versioned[providers.Token], error) {
	var v Versioned[providers.Token]
	ver, notes, err := s.readFields(ctx, s.linkPath(tenant, link, partRefresh), &v.Value)
	v.Version, v.Enrollment = ver, notes[noteField]
	return v, err
}

// syncAccess writes the access part of cur unless the access secret
// already holds it (or a newer one: check-and-set on what was read).
func (s *Store) syncAccess(ctx context.Context, tenant, link string, cur Versioned[providers.Token]) error {
	var seen providers.Token
	ver, notes, err := s.readFields(ctx, s.TokenPath(tenant, link), &seen)
	switch {
	case errors.Is(err, ErrNotFound):
		ver = 0
	case err != nil:
		return err
	default:
		if n, err := strconv.Atoi(notes[tokenVersionField]); err == nil && n >= cur.Version {
			return nil
		}
	}
	if _, err := s.writeAccess(ctx, tenant, link, cur.Value, cur.Version, ver); err != nil && !errors.Is(err, ErrVersionConflict) {
		return err
	}
	return nil
}

func (s *Store) writeAccess(ctx context.Context, tenant, link string, t providers.Token, version, cas int) (int, error) {
	return s.write(ctx, s.TokenPath(tenant, link), accessPart(t), cas,
		map[string]string{tokenVersionField: strconv.Itoa(version)})
}

// WriteToken stores a link's token if the stored version is still cas
// (0: only if nothing is stored yet; -1: unconditionally). It returns the
// new version.
//
// It takes two writes, in this order for crash safety. The refresh secret
// first, with check-and-set: a rotated refresh token exists only in the
// caller's memory until it is there, and it must never be lost. Then the
// access secret: until it lands, the gateway serves the previous access
// token, which the provider has not revoked and which is still valid (the
// workflow refreshes ahead of expiry). Should the second write fail or the
// process die before it, the next read by the worker (ReadToken, which
// every activity starts with, and which a retried write reaches through
// its version conflict) repeats it; an error here says the access secret
// may lag.
func (s *Store) WriteToken(ctx context.Context, tenant, link string, t providers.Token, cas int) (int, error) {
	return s.writeToken(ctx, tenant, link, t, cas, "")
}

// WriteEnrolledToken is WriteToken for the first token of an enrollment:
// it stores enrollment (a non-secret identifier of the grant material the
// token came from) beside the token, so that a retried enrollment can tell
// that its exchange already happened (Versioned.Enrollment).
func (s *Store) WriteEnrolledToken(ctx context.Context, tenant, link string, t providers.Token, cas int, enrollment string) (int, error) {
	return s.writeToken(ctx, tenant, link, t, cas, enrollment)
}

func (s *Store) writeToken(ctx context.Context, tenant, link string, t providers.Token, cas int, enrollment string) (int, error) {
	ver, err := s.write(ctx, s.linkPath(tenant, link, partRefresh), t, cas, map[string]string{noteField: enrollment})
	if err != nil {
		return 0, err
	}
	if _, err := s.writeAccess(ctx, tenant, link, t, ver, -1); err != nil {
		return 0, fmt.Errorf("token stored at version %d, its access part not yet: %w", ver, err)
	}
	return ver, nil
}

// ReadGrant returns a link's whole grant material, credentials included:
// the worker's read. Its version changes with every new authorization (a
// code, device code or password the gateway stores). A link still in the
// earlier layout is moved first.
func (s *Store) ReadGrant(ctx context.Context, tenant, link string) (Versioned[providers.Grant], error) {
	v, err := s.readGrantPart(ctx, tenant, link, partGrant)
	if errors.Is(err, ErrNotFound) {
		if moved, merr := s.migrateLink(ctx, tenant, link); merr != nil {
			return v, merr
		} else if moved {
			v, err = s.readGrantPart(ctx, tenant, link, partGrant)
		}
	}
	return v, err
}

// ReadGrantRequest returns the part of a link's grant the gateway may
// read (requestPart): no password, code or device code.
func (s *Store) ReadGrantRequest(ctx context.Context, tenant, link string) (Versioned[providers.Grant], error) {
	return s.readGrantPart(ctx, tenant, link, partRequest)
}

func (s *Store) readGrantPart(ctx context.Context, tenant, link, part string) (Versioned[providers.Grant], error) {
	var v Versioned[providers.Grant]
	ver, err := s.read(ctx, s.linkPath(tenant, link, part), &v.Value)
	v.Version = ver
	return v, err
}

// WriteGrant stores a link's grant material: the whole of g for the
// worker (check-and-set on cas, the version ReadGrant returned; -1
// writes unconditionally), then its request part for the gateway. It
// returns the version of the whole. Both the gateway and the worker write
// grants; neither reads back the other's secret part here.
//
// The whole goes first: a request part present means the grant is there
// (the gateway's test for a replayed creation), and a spent code is
// cleared from the whole in one write.
func (s *Store) WriteGrant(ctx context.Context, tenant, link string, g providers.Grant, cas int) (int, error) {
	ver, err := s.write(ctx, s.linkPath(tenant, link, partGrant), g, cas, nil)
	if err != nil {
		return 0, err
	}
	if _, err := s.write(ctx, s.linkPath(tenant, link, partRequest), requestPart(g), -1, nil); err != nil {
		return 0, err
	}
	return ver, nil
}

// DeleteLink destroys every version of a link's secrets. Deleting what is
// already gone is not an error, so revocation can retry. The refresh
// secret goes first and the access secret last: a deletion cut short
// leaves at most an access token the gateway still serves until the retry,
// never a refresh secret that a later read would copy back.
func (s *Store) DeleteLink(ctx context.Context, tenant, link string) error {
	for _, part := range []string{partRefresh, partGrant, partRequest, partAccess} {
		if err := s.destroy(ctx, s.linkPath(tenant, link, part)); err != nil {
			return err
		}
	}
	return nil
}
