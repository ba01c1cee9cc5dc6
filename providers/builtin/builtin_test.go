package builtin

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKindsMakeFreshConfigs(t *testing.T) {
	for _, name := range []string{"oauth2", "oidc"} {
		kind, ok := Kinds[name]
		require.True(t, ok, name)
		a, b := kind(), kind()
		require.NotNil(t, a)
		assert.NotSame(t, a, b, "%s: each entry must decode into its own Config", name)
	}
}
