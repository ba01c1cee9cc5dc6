// Package vault holds the Vault artefacts the engine ships: the ACL policy of
// its AppRole. The .hcl file is the one source of truth; this package embeds
// it so the dev stack loads exactly what operators are told to load.
package vault

import _ "embed"

// PolicyName is the name the engine's policy is written under.
const PolicyName = "tokenwarden"

// Policy is the text of tokenwarden-policy.hcl.
//
//go:embed tokenwarden-policy.hcl
var Policy string
