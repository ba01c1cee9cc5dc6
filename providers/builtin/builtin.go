// Package builtin lists the provider kinds Tokenwarden ships. It lives
// apart from package providers so that it may import every provider
// package without a cycle; cmd code passes Kinds to providers.Load.
package builtin

import (
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// Kinds maps each kind name a catalog may use to its Config.
var Kinds = map[string]providers.Kind{
	generic.KindOAuth2: generic.OAuth2,
	generic.KindOIDC:   generic.OIDC,
}
