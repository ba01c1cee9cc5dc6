// Package builtin lists the provider kinds Tokenwarden ships. It lives
// apart from package providers so that it may import every provider
// package without a cycle; cmd code passes Kinds to providers.Load.
package builtin

import (
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/demobank"
	"github.com/tokenwarden/tokenwarden/providers/everifin"
	"github.com/tokenwarden/tokenwarden/providers/finapi"
	"github.com/tokenwarden/tokenwarden/providers/generic"
	"github.com/tokenwarden/tokenwarden/providers/luca"
	"github.com/tokenwarden/tokenwarden/providers/norman"
)

// Kinds maps each kind name a catalog may use to its Config.
var Kinds = map[string]providers.Kind{
	generic.KindOAuth2: generic.OAuth2,
	generic.KindOIDC:   generic.OIDC,
	luca.KindName:      luca.New,
	everifin.KindName:  everifin.New,
	demobank.KindName:  demobank.New,
	norman.KindName:    norman.New,
	finapi.KindName:    finapi.New,
}
