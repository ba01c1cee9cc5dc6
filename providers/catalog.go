package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"gopkg.in/yaml.v3"

	"github.com/tokenwarden/tokenwarden/providers/schedule"
)

// Entry is one provider of the catalog, decoded and defaulted. It holds
// no secret: the client secret is a reference, so the gateway may show an
// Entry as it is (GET /v1/providers). Kind-specific settings are decoded
// into the kind's Config and are not part of it.
type Entry struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Issuer    string    `json:"issuer,omitempty"`
	Endpoint  Endpoint  `json:"endpoint"`
	AuthStyle AuthStyle `json:"auth_style"`
	ClientID  string    `json:"client_id"`
	// ClientSecret is where the secret lives, never the secret.
	ClientSecret  SecretRef         `json:"client_secret,omitzero"`
	Scopes        []string          `json:"scopes,omitempty"`
	Grants        []string          `json:"grants"`
	PKCE          bool              `json:"pkce"`
	AuthParams    map[string]string `json:"auth_params,omitempty"`
	TokenParams   map[string]string `json:"token_params,omitempty"`
	AllowedParams []string          `json:"allowed_params,omitempty"`
	Schedule      Schedule          `json:"schedule"`
	// ForcedRefreshInterval is the least time between two forced
	// refreshes (POST /v1/links/{id}/refresh) of one link; a force sooner
	// is answered with the current token. Default
	// DefaultForcedRefreshInterval; 0 turns the limit off.
	ForcedRefreshInterval time.Duration `json:"forced_refresh_interval"`
	// RedirectState is how the authorization redirect carries the state
	// back to the gateway's callback.
	RedirectState RedirectState `json:"redirect_state,omitempty"`
	// API is where the provider's API is and how much of it the gateway's
	// proxy (/v1/links/{id}/proxy/...) may use; a zero BaseURL means the
	// catalog names no API and the proxy refuses the provider's links.
	API API `json:"api,omitzero"`
}

// RedirectState says where the OAuth state rides on the way back from
// the provider's consent page.
type RedirectState string

const (
	// RedirectStateQuery: the provider echoes ?state= (RFC 6749 4.1.2).
	// The default, unless the kind says otherwise.
	RedirectStateQuery RedirectState = "query"
	// RedirectStatePath: for providers that may drop state. The state is
	// part of the redirect URI's path (.../v1/oauth/callback/<state>), and
	// the authorization URL is a gateway page that binds the flow to the
	// browser with a cookie before it redirects to the provider; the
	// callback requires both. The provider must accept a redirect_uri
	// per authorization request (and, to bind the code to the link,
	// check it again at the token endpoint, as RFC 6749 4.1.3 requires).
	RedirectStatePath RedirectState = "path"
)

// RedirectStateDefaulter is an optional Config capability: the kind's
// redirect_state when the entry leaves it out.
type RedirectStateDefaulter interface {
	DefaultRedirectState() RedirectState
}

// DefaultForcedRefreshInterval is an entry's ForcedRefreshInterval when
// the catalog sets none.
const DefaultForcedRefreshInterval = 5 * time.Second

// HasGrant reports whether the entry lists grant type g.
func (e Entry) HasGrant(g string) bool { return slices.Contains(e.Grants, g) }

// AuthStyle is how the client authenticates at the token endpoint
// (and at revocation and introspection).
type AuthStyle string

const (
	// AuthStyleAuto tries HTTP Basic first and falls back to the body on
	// a client-authentication failure; with discovery, the issuer's
	// token_endpoint_auth_methods_supported decides.
	AuthStyleAuto AuthStyle = "auto"
	// AuthStyleHeader is client_secret_basic.
	AuthStyleHeader AuthStyle = "header"
	// AuthStyleBody is client_secret_post.
	AuthStyleBody AuthStyle = "body"
	// AuthStyleNone is a public client: client_id in the body, no secret.
	AuthStyleNone AuthStyle = "none"
)

// OAuth2 maps s onto x/oauth2's style. None maps to InParams, which with
// an empty secret sends the client_id alone.
func (s AuthStyle) OAuth2() oauth2.AuthStyle {
	switch s {
	case AuthStyleHeader:
		return oauth2.AuthStyleInHeader
	case AuthStyleBody, AuthStyleNone:
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleAutoDetect
}

func (s AuthStyle) valid() bool {
	switch s {
	case AuthStyleAuto, AuthStyleHeader, AuthStyleBody, AuthStyleNone:
		return true
	}
	return false
}

// SecretRef says where a secret lives: a Vault path with a field after
// '#', an environment variable, or (development only) the value itself.
// Its String, GoString and JSON forms never show a value.
type SecretRef struct {
	Vault string `yaml:"vault"`
	Env   string `yaml:"env"`
	Value string `yaml:"value"`
}

// IsZero reports whether no secret is configured.
func (r SecretRef) IsZero() bool { return r.Vault == "" && r.Env == "" && r.Value == "" }

func (r SecretRef) String() string {
	switch {
	case r.Vault != "":
		return "vault:" + r.Vault
	case r.Env != "":
		return "env:" + r.Env
	case r.Value != "":
		return "inline"
	}
	return ""
}

// GoString keeps %#v from printing Value.
func (r SecretRef) GoString() string { return fmt.Sprintf("providers.SecretRef(%q)", r.String()) }

// MarshalJSON shows the reference; an inline value shows as
// {"inline": true}.
func (r SecretRef) MarshalJSON() ([]byte, error) {
	switch {
	case r.Vault != "":
		return json.Marshal(map[string]string{"vault": r.Vault})
	case r.Env != "":
		return json.Marshal(map[string]string{"env": r.Env})
	case r.Value != "":
		return json.Marshal(map[string]bool{"inline": true})
	}
	return []byte("{}"), nil
}

// UnmarshalYAML refuses anything but a mapping without echoing it: a
// secret pasted as a plain string must not end up in a boot error.
func (r *SecretRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: client_secret must be a mapping: {vault: path#field}, {env: NAME} or {value: ...}", n.Line)
	}
	type plain SecretRef
	var p plain
	for i := 0; i+1 < len(n.Content); i += 2 {
		if v := n.Content[i+1]; v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: client_secret.%s must be a string", v.Line, n.Content[i].Value)
		}
	}
	if err := n.Decode(&p); err != nil {
		return errors.New("client_secret: cannot decode")
	}
	*r = SecretRef(p)
	return nil
}

// Resolver returns the secret a Vault reference points to. The catalog
// resolves env and value references itself. Its errors must not contain
// the secret.
type Resolver func(ctx context.Context, ref SecretRef) (string, error)

// Config is a kind's configuration, as Dex's connector configs are. The
// catalog decodes an entry's settings into a fresh Config from the kind,
// so an exported struct with yaml tags is the usual form. Open builds the
// provider once the client secret is known; it may call the network
// (OIDC discovery) and must honour ctx.
type Config interface {
	Open(ctx context.Context, e Entry, s Setup) (Provider, error)
}

// Validator is an optional Config capability: Load calls it so that a
// kind's own rules (required endpoints, supported grants, settings) fail
// at boot, listed with everything else. An error made by errors.Join
// lists as one problem per joined error.
type Validator interface {
	Validate(e Entry) error
}

// Warner is an optional Config capability: Load adds its warnings (an
// entry that works but is probably a mistake, such as a client_id other
// than the one the provider's documentation fixes) to Catalog.Warnings,
// which tokenwarden logs at start. It runs after Validate.
type Warner interface {
	Warnings(e Entry) []string
}

// Defaulter is an optional Config capability: Load lets it fill what the
// kind fixes (a public client's client_id) in an entry that leaves it
// out, before the entry is checked.
type Defaulter interface {
	Default(e *Entry)
}

// Setup is what Config.Open gets besides the entry.
type Setup struct {
	// ClientSecret is the resolved secret, empty for a public client.
	ClientSecret string
	// HTTPClient is for every call to the provider. Never nil.
	HTTPClient *http.Client
	// Resolve fetches further secrets a kind's settings refer to. Never
	// nil; it handles env and value references as well.
	Resolve Resolver
}

// Kind makes a fresh, empty Config for one kind of provider.
type Kind func() Config

// Catalog is a decoded, validated catalog. It holds no secret values
// other than inline (development) ones; Open resolves the rest.
type Catalog struct {
	entries []catalogEntry
	// Warnings are things that work but should not reach production,
	// such as inline secrets.
	Warnings []string
}

type catalogEntry struct {
	Entry
	config Config
}

// Entries returns the entries in catalog order.
func (c *Catalog) Entries() []Entry {
	out := make([]Entry, len(c.entries))
	for i, ce := range c.entries {
		out[i] = ce.Entry
	}
	return out
}

// CatalogError lists every problem found in a catalog, each prefixed with
// the entry it belongs to.
type CatalogError struct {
	Problems []string
}

func (e *CatalogError) Error() string {
	if len(e.Problems) == 1 {
		return "provider catalog: " + e.Problems[0]
	}
	return fmt.Sprintf("provider catalog: %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// rawEntry is the YAML form of an entry. Pointers mark fields whose
// absence means a default.
type rawEntry struct {
	Name          string            `yaml:"name"`
	Kind          string            `yaml:"kind"`
	Issuer        string            `yaml:"issuer"`
	Endpoint      Endpoint          `yaml:"endpoint"`
	AuthStyle     AuthStyle         `yaml:"auth_style"`
	ClientID      string            `yaml:"client_id"`
	ClientSecret  SecretRef         `yaml:"client_secret"`
	Scopes        []string          `yaml:"scopes"`
	Grants        []string          `yaml:"grants"`
	PKCE          *bool             `yaml:"pkce"`
	AuthParams    map[string]string `yaml:"auth_params"`
	TokenParams   map[string]string `yaml:"token_params"`
	AllowedParams []string          `yaml:"allowed_params"`
	Schedule      Schedule          `yaml:"schedule"`
	Settings      yaml.Node         `yaml:"settings"`
	// ForcedRefreshInterval is a pointer so that an explicit "0s" (no
	// limit) differs from unset (the default).
	ForcedRefreshInterval *Duration     `yaml:"forced_refresh_interval"`
	RedirectState         RedirectState `yaml:"redirect_state"`
	// The provider's API, for the gateway's proxy (Entry.API).
	APIBaseURL       string  `yaml:"api_base_url"`
	APIAllowInternal bool    `yaml:"api_allow_internal"`
	APIRateLimit     float64 `yaml:"api_rate_limit"`
	APIBurst         int     `yaml:"api_burst"`
	APIMaxConcurrent int     `yaml:"api_max_concurrent"`
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	grantRE = regexp.MustCompile(`^[a-z][a-z0-9_:.-]*$`)
	// yamlValueRE finds the values yaml.v3 quotes in its type errors;
	// they are cut out because a value may be a secret.
	yamlValueRE = regexp.MustCompile("`[^`]*`")
)

// Parameters the engine sets itself; the catalog and callers may not.
var (
	reservedAuthParams = []string{"response_type", "client_id", "redirect_uri", "state",
		"code_challenge", "code_challenge_method", "scope"}
	reservedTokenParams = []string{"grant_type", "code", "code_verifier", "redirect_uri",
		"refresh_token", "client_id", "client_secret", "username", "password", "device_code",
		"scope", "client_assertion", "client_assertion_type"}
)

// LoadFile is Load on a file.
func LoadFile(path string, kinds map[string]Kind) (*Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("provider catalog: %w", err)
	}
	defer f.Close()
	return Load(f, kinds)
}

// Load decodes and validates a catalog. kinds maps each kind name to its
// Config; providers/builtin has the ones Tokenwarden ships. Every problem
// is reported at once, in a *CatalogError, so that one boot shows them
// all.
func Load(r io.Reader, kinds map[string]Kind) (*Catalog, error) {
	var doc struct {
		Providers []yaml.Node `yaml:"providers"`
	}
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &CatalogError{Problems: []string{"empty document; want a providers: list"}}
		}
		return nil, &CatalogError{Problems: []string{yamlProblem(err)}}
	}
	c := &Catalog{}
	var problems []string
	if len(doc.Providers) == 0 {
		problems = append(problems, "no providers listed")
	}
	seen := map[string]int{}
	for i := range doc.Providers {
		n := &doc.Providers[i]
		ce, label, ps, ws := loadEntry(n, i, kinds)
		for _, p := range ps {
			problems = append(problems, label+": "+p)
		}
		for _, w := range ws {
			c.Warnings = append(c.Warnings, label+": "+w)
		}
		if ce.Name != "" {
			if first, dup := seen[ce.Name]; dup {
				problems = append(problems, fmt.Sprintf("%s: duplicate name; first used by providers[%d]", label, first))
			} else {
				seen[ce.Name] = i
			}
		}
		if len(ps) == 0 {
			c.entries = append(c.entries, ce)
		}
	}
	if len(problems) > 0 {
		return nil, &CatalogError{Problems: problems}
	}
	return c, nil
}

// loadEntry decodes and checks one entry. label names it in problems.
func loadEntry(n *yaml.Node, i int, kinds map[string]Kind) (ce catalogEntry, label string, problems, warnings []string) {
	label = fmt.Sprintf("providers[%d] (line %d)", i, n.Line)
	if n.Kind != yaml.MappingNode {
		return ce, label, []string{"want a mapping"}, nil
	}
	if name := mappingValue(n, "name"); name != "" {
		label = fmt.Sprintf("provider %q", name)
	}
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	raw := rawEntry{Schedule: DefaultSchedule()}
	problems = append(problems, unknownKeys(n, "", reflect.TypeOf(raw))...)
	if ep := mappingNode(n, "endpoint"); ep != nil {
		problems = append(problems, unknownKeys(ep, "endpoint.", reflect.TypeOf(Endpoint{}))...)
	}
	if cs := mappingNode(n, "client_secret"); cs != nil {
		problems = append(problems, unknownKeys(cs, "client_secret.", reflect.TypeOf(SecretRef{}))...)
	}
	if s := mappingNode(n, "schedule"); s != nil {
		problems = append(problems, unknownKeys(s, "schedule.", reflect.TypeOf(schedule.YAML{}))...)
	}
	if err := n.Decode(&raw); err != nil {
		problems = append(problems, yamlProblem(err))
		return ce, label, problems, nil
	}

	e := Entry{
		Name:          raw.Name,
		Kind:          raw.Kind,
		Issuer:        raw.Issuer,
		Endpoint:      raw.Endpoint,
		AuthStyle:     raw.AuthStyle,
		ClientID:      raw.ClientID,
		ClientSecret:  raw.ClientSecret,
		Scopes:        raw.Scopes,
		Grants:        raw.Grants,
		PKCE:          raw.PKCE == nil || *raw.PKCE,
		AuthParams:    raw.AuthParams,
		TokenParams:   raw.TokenParams,
		AllowedParams: raw.AllowedParams,
		Schedule:      raw.Schedule,

		ForcedRefreshInterval: DefaultForcedRefreshInterval,
		RedirectState:         raw.RedirectState,
	}
	if raw.ForcedRefreshInterval != nil {
		e.ForcedRefreshInterval = time.Duration(*raw.ForcedRefreshInterval)
	}
	if e.ForcedRefreshInterval < 0 || e.ForcedRefreshInterval > time.Hour {
		add("forced_refresh_interval %s must be from 0s to 1h", e.ForcedRefreshInterval)
	}
	var apiProblems []string
	e.API, apiProblems = loadAPI(raw)
	problems = append(problems, apiProblems...)
	if e.AuthStyle == "" {
		e.AuthStyle = AuthStyleAuto
	}

	switch {
	case e.Name == "":
		add("name is required")
	case !nameRE.MatchString(e.Name):
		add("name %q must match [a-z0-9][a-z0-9-]* (at most 63 characters)", e.Name)
	}
	var cfg Config
	switch kind, ok := kinds[e.Kind]; {
	case e.Kind == "":
		add("kind is required; known kinds: %s", knownKinds(kinds))
	case !ok:
		add("unknown kind %q; known kinds: %s", e.Kind, knownKinds(kinds))
	default:
		cfg = kind()
	}
	if e.RedirectState == "" {
		e.RedirectState = RedirectStateQuery
		if d, ok := cfg.(RedirectStateDefaulter); ok {
			e.RedirectState = d.DefaultRedirectState()
		}
	}
	if e.RedirectState != RedirectStateQuery && e.RedirectState != RedirectStatePath {
		add("redirect_state %q must be query or path", e.RedirectState)
	}
	if e.Issuer != "" && !validURL(e.Issuer) {
		add("issuer %q is not an absolute http(s) URL", e.Issuer)
	}
	for _, u := range []struct{ name, v string }{
		{"auth_url", e.Endpoint.AuthURL},
		{"token_url", e.Endpoint.TokenURL},
		{"device_auth_url", e.Endpoint.DeviceAuthURL},
		{"revocation_url", e.Endpoint.RevocationURL},
		{"introspection_url", e.Endpoint.IntrospectionURL},
		{"userinfo_url", e.Endpoint.UserinfoURL},
		{"logout_url", e.Endpoint.LogoutURL},
	} {
		if !validURL(u.v) {
			add("endpoint.%s %q is not an absolute http(s) URL", u.name, u.v)
		}
	}
	if !e.AuthStyle.valid() {
		add("auth_style %q must be one of header, body, none, auto", e.AuthStyle)
	}
	if d, ok := cfg.(Defaulter); ok {
		d.Default(&e)
	}
	if e.ClientID == "" {
		add("client_id is required")
	}

	secret := e.ClientSecret
	switch set := btoi(secret.Vault != "") + btoi(secret.Env != "") + btoi(secret.Value != ""); {
	case set > 1:
		add("client_secret must have exactly one of vault, env, value")
	case secret.Vault != "":
		if path, field, ok := strings.Cut(secret.Vault, "#"); path == "" || (ok && field == "") {
			add("client_secret.vault %q must look like path#field", secret.Vault)
		}
	case secret.Value != "":
		warnings = append(warnings, "client_secret.value puts the secret in the catalog; use vault or env outside development")
	}
	switch {
	case e.AuthStyle == AuthStyleNone && !secret.IsZero():
		warnings = append(warnings, "client_secret is unused with auth_style none")
	case e.AuthStyle != AuthStyleNone && secret.IsZero():
		warnings = append(warnings, "no client_secret: the client authenticates with its client_id only")
	}

	for _, s := range e.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			add("scope %q must be non-empty without spaces, quotes or backslashes", s)
		}
	}
	if len(e.Grants) == 0 {
		add("grants must list at least one grant type")
	}
	for i, g := range e.Grants {
		if !grantRE.MatchString(g) {
			add("grant %q is not a grant type name", g)
		} else if slices.Contains(e.Grants[:i], g) {
			add("grant %q is listed twice", g)
		}
	}
	for k := range e.AuthParams {
		if k == "" || slices.Contains(reservedAuthParams, k) {
			add("auth_params may not set %q", k)
		}
	}
	for k := range e.TokenParams {
		if k == "" || slices.Contains(reservedTokenParams, k) {
			add("token_params may not set %q", k)
		}
	}
	for i, k := range e.AllowedParams {
		switch {
		case k == "" || slices.Contains(reservedAuthParams, k):
			add("allowed_params may not include %q", k)
		case slices.Contains(e.AllowedParams[:i], k):
			add("allowed_params lists %q twice", k)
		}
	}
	if err := e.Schedule.Validate(); err != nil {
		for _, err := range splitErrors(err) {
			add("%s", err.Error())
		}
	}

	if cfg != nil {
		if !raw.Settings.IsZero() {
			if t := reflect.TypeOf(cfg); t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
				problems = append(problems, unknownKeys(&raw.Settings, "settings.", t.Elem())...)
			}
			if err := raw.Settings.Decode(cfg); err != nil {
				problems = append(problems, "settings: "+yamlProblem(err))
			}
		}
		if v, ok := cfg.(Validator); ok {
			if err := v.Validate(e); err != nil {
				for _, err := range splitErrors(err) {
					add("%s", err.Error())
				}
			}
		}
		if w, ok := cfg.(Warner); ok {
			warnings = append(warnings, w.Warnings(e)...)
		}
	}
	return catalogEntry{Entry: e, config: cfg}, label, problems, warnings
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func knownKinds(kinds map[string]Kind) string {
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// splitErrors undoes errors.Join so that each problem gets its own line.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// yamlProblem renders a YAML error without the values it quotes.
func yamlProblem(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = yamlValueRE.ReplaceAllString(m, "value")
		}
		return strings.Join(msgs, "; ")
	}
	return yamlValueRE.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "value")
}

func mappingNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.MappingNode {
			return n.Content[i+1]
		}
	}
	return nil
}

func mappingValue(n *yaml.Node, key string) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// unknownKeys reports keys of mapping n that no yaml tag of struct type t
// names: yaml.v3's KnownFields does not reach Node.Decode, and a typo
// such as "revocation_uri" must not silently disable revocation.
func unknownKeys(n *yaml.Node, prefix string, t reflect.Type) []string {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		known[name] = true
	}
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !known[k.Value] {
			out = append(out, fmt.Sprintf("line %d: unknown field %s%s", k.Line, prefix, k.Value))
		}
	}
	return out
}
