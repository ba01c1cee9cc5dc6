// Package sim simulates the finAPI Demobank authorization server: a
// Keycloak realm per mandator at /realms/<mandator> (Keycloak 17+
// paths, no /auth prefix), a public client demobank-cli with direct
// (password) grants, 15-minute JWT access tokens and 30-minute refresh
// tokens, and finAPI's extra reply fields (mandator_name, mandator_uuid,
// is_test_mandator, is_technical_user).
//
// It is Everifin's Keycloak simulator configured for finAPI: the
// Keycloak behaviour (errors, sessions, logout, rotation, faults) is
// documented there. The logout endpoint is Keycloak's; finAPI's seed
// does not mention it. So is the userinfo endpoint, the service call the
// proxy's tests make: the seed names no Demobank API path, only that "a
// service call" with an expired token "will result in a HTTP code 401",
// which userinfo answers too.
package sim

import (
	"time"

	kc "github.com/tokenwarden/tokenwarden/providers/everifin/sim"
)

// ClientID is finAPI's fixed public client.
const ClientID = "demobank-cli"

// Options configure a Server. Zero fields take finAPI's defaults.
type Options struct {
	// Mandator is the realm name. Default "customer", as in finAPI's
	// example.
	Mandator string
	// Users maps user names to passwords. Default {"demo": "demo-password"}.
	Users map[string]string
	// AccessTTL defaults to 900s, RefreshTTL to 1800s.
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	// RevokeRefreshToken makes refresh tokens single-use (a Keycloak
	// realm switch; finAPI does not say, so it is off by default).
	RevokeRefreshToken bool
	// MandatorName and MandatorUUID are reported in token replies.
	MandatorName string
	MandatorUUID string
	// ClientIDs are the public clients the realm knows. Default
	// [ClientID], as finAPI fixes it; any other client_id is answered
	// 401 invalid_client, as Keycloak does.
	ClientIDs []string
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server is the simulated finAPI Keycloak. It implements http.Handler;
// fault, expiry and inspection methods (FailNext, RateLimit, Malformed,
// ExpireRefreshTokens, LockUser, Valid, Stats, ...) come from the
// embedded Keycloak simulator.
type Server struct {
	*kc.Server
}

// New returns a simulated finAPI realm.
func New(opts Options) *Server {
	if opts.Mandator == "" {
		opts.Mandator = "customer"
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"demo": "demo-password"}
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 900 * time.Second
	}
	if opts.MandatorName == "" {
		opts.MandatorName = "finAPI Demobank"
	}
	if opts.MandatorUUID == "" {
		opts.MandatorUUID = "044ab580-5b4e-4b8e-a1c2-991e324704b7"
	}
	if len(opts.ClientIDs) == 0 {
		opts.ClientIDs = []string{ClientID}
	}
	clients := make([]kc.Client, len(opts.ClientIDs))
	for i, id := range opts.ClientIDs {
		clients[i] = kc.Client{ID: id, DirectGrants: true}
	}
	return &Server{kc.New(kc.Options{
		Realm:              opts.Mandator,
		NoAuthPrefix:       true,
		Clients:            clients,
		Users:              opts.Users,
		AccessTTL:          opts.AccessTTL,
		RefreshTTL:         opts.RefreshTTL,
		RevokeRefreshToken: opts.RevokeRefreshToken,
		Scope:              "xs2a_mock:user profile",
		Extra: map[string]any{
			"mandator_name":     opts.MandatorName,
			"mandator_uuid":     opts.MandatorUUID,
			"is_test_mandator":  "false",
			"is_technical_user": "false",
		},
		Now: opts.Now,
	})}
}
