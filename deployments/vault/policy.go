// Package vault holds the Vault artefacts the engine ships: the ACL
// policies of its two identities. The worker, which refreshes tokens, may
// read everything; the gateway, which faces the internet, reads access
// tokens and never a refresh token or a stored credential. The .hcl files
// are the one source of truth; this package embeds them so the dev stack
// loads exactly what operators are told to load.
package vault

import (
	_ "embed"
	"regexp"
	"strings"
)

// Names the policies are written under, and of the AppRoles that carry
// them (one each, the same name).
const (
	WorkerPolicyName  = "tokenwarden-worker"
	GatewayPolicyName = "tokenwarden-gateway"
)

// WorkerPolicy is the text of tokenwarden-worker-policy.hcl.
//
//go:embed tokenwarden-worker-policy.hcl
var WorkerPolicy string

// GatewayPolicy is the text of tokenwarden-gateway-policy.hcl.
//
//go:embed tokenwarden-gateway-policy.hcl
var GatewayPolicy string

// Mount and Prefix are where the policies expect the engine's secrets:
// the KV v2 mount and the path prefix inside it.
const (
	Mount  = "secret"
	Prefix = "tokenwarden"
)

// policyPath matches the mount and prefix in a policy's path rules.
var policyPath = regexp.MustCompile(`path "` + Mount + `/(data|metadata|delete|undelete|destroy)/` + Prefix + `([/"])`)

// ForPrefix rewrites policy for secrets kept under another mount or prefix
// (TOKENWARDEN_VAULT_MOUNT, TOKENWARDEN_VAULT_PREFIX; the tests' private
// prefixes). Only the path rules change.
func ForPrefix(policy, mount, prefix string) string {
	mount, prefix = strings.Trim(mount, "/"), strings.Trim(prefix, "/")
	return policyPath.ReplaceAllStringFunc(policy, func(m string) string {
		sub := policyPath.FindStringSubmatch(m)
		return `path "` + mount + "/" + sub[1] + "/" + prefix + sub[2]
	})
}
