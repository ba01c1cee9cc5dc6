package providers_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

// apiEntry is an oauth2 entry with the given api_* lines.
func apiEntry(lines string) string {
	return fmt.Sprintf(`providers:
  - name: p
    kind: oauth2
    client_id: x
    grants: [client_credentials]
    endpoint: {token_url: "https://a.example.com/token"}
%s`, lines)
}

func TestAPIBaseURL(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines string
		want  providers.API
		// problem is part of the one problem expected; "" for none.
		problem string
	}{
		{name: "none", lines: ""},
		{name: "https, trailing slash dropped, default limits",
			lines: "    api_base_url: https://api.example.com/v1/\n",
			want: providers.API{BaseURL: "https://api.example.com/v1", RateLimit: providers.DefaultAPIRateLimit,
				Burst: providers.DefaultAPIBurst, MaxConcurrent: providers.DefaultAPIMaxConcurrent}},
		{name: "own limits; burst follows a high rate",
			lines: "    api_base_url: https://api.example.com:8443\n    api_rate_limit: 100\n    api_max_concurrent: 4\n",
			want:  providers.API{BaseURL: "https://api.example.com:8443", RateLimit: 100, Burst: 100, MaxConcurrent: 4}},
		{name: "http for a local simulator",
			lines: "    api_base_url: http://127.0.0.1:9401/api/v1\n    api_allow_internal: true\n",
			want: providers.API{BaseURL: "http://127.0.0.1:9401/api/v1", AllowInternal: true, RateLimit: providers.DefaultAPIRateLimit,
				Burst: providers.DefaultAPIBurst, MaxConcurrent: providers.DefaultAPIMaxConcurrent}},
		{name: "http", lines: "    api_base_url: http://api.example.com\n", problem: "must be https"},
		{name: "relative", lines: "    api_base_url: /api\n", problem: "absolute https URL"},
		{name: "other scheme", lines: "    api_base_url: ftp://api.example.com\n", problem: "absolute https URL"},
		{name: "query", lines: "    api_base_url: https://api.example.com/v1?x=1\n", problem: "query"},
		{name: "fragment", lines: "    api_base_url: https://api.example.com/v1#x\n", problem: "fragment"},
		{name: "credentials", lines: "    api_base_url: https://user:hunter2@api.example.com\n", problem: "credentials"},
		{name: "dot segments", lines: "    api_base_url: https://api.example.com/v1/../admin\n", problem: ". or .."},
		{name: "loopback", lines: "    api_base_url: https://127.0.0.1/api\n", problem: "internal address"},
		{name: "localhost", lines: "    api_base_url: https://localhost:8443\n", problem: "internal address"},
		{name: "metadata", lines: "    api_base_url: https://169.254.169.254\n", problem: "internal address"},
		{name: "private v6", lines: "    api_base_url: https://[fd00::1]/\n", problem: "internal address"},
		{name: "limits without a base", lines: "    api_rate_limit: 5\n", problem: "need api_base_url"},
		{name: "negative rate", lines: "    api_base_url: https://api.example.com\n    api_rate_limit: -1\n", problem: "api_rate_limit"},
		{name: "zero concurrency is the default, negative is not",
			lines: "    api_base_url: https://api.example.com\n    api_max_concurrent: -2\n", problem: "api_max_concurrent"},
		{name: "typo", lines: "    api_base_uri: https://api.example.com\n", problem: "unknown field api_base_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, apiEntry(tc.lines))
			if tc.problem != "" {
				var ce *providers.CatalogError
				require.True(t, errors.As(err, &ce), "want a catalog error, got %v", err)
				require.Len(t, ce.Problems, 1, "%v", ce.Problems)
				assert.Contains(t, ce.Problems[0], tc.problem)
				assert.NotContains(t, ce.Problems[0], "hunter2", "a URL's credentials never reach a boot error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, c.Entries()[0].API)
		})
	}
}
