package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/providers"
)

// graphQLRefusal is a GraphQL server's 200 for a token it does not accept.
const graphQLRefusal = `{"errors":[{"message":"Unauthenticated.","extensions":{"category":"authentication"}}]}`

// refusalReader is a provider that tells refused tokens by a GraphQL
// body, as Luca does; it remembers the largest body it was shown.
type refusalReader struct {
	plainProvider
	mu      sync.Mutex
	calls   int
	largest int
}

func (r *refusalReader) AuthFailed(status int, _ http.Header, body []byte) bool {
	r.mu.Lock()
	r.calls++
	r.largest = max(r.largest, len(body))
	r.mu.Unlock()
	return status == http.StatusOK && bytes.HasPrefix(body, []byte(`{"errors":[{"message":"Unauthenticated."`))
}

// withRefusalReader makes the rig's provider "api" a refusalReader.
func withRefusalReader(t *testing.T, r *proxyRig) *refusalReader {
	t.Helper()
	_, entry, ok := r.d.Providers.Get("api")
	require.True(t, ok)
	rr := &refusalReader{}
	reg := providers.NewRegistry()
	require.NoError(t, reg.Add(entry, rr))
	require.NoError(t, reg.Add(fakeEntry, plainProvider{}))
	r.d.Providers = reg
	return rr
}

// graphQLAPI answers 200 with a refusal to the tokens in refused and
// with data to the others.
func graphQLAPI(refused ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		for _, x := range refused {
			if tok == x {
				_, _ = io.WriteString(w, graphQLRefusal)
				return
			}
		}
		_, _ = io.WriteString(w, `{"data":{"me":{"id":"1"}}}`)
	}
}

// TestProxyRetriesAReplyTheProviderReadsAsRefused: a 200 whose body the
// provider reads as a refused token (Luca's GraphQL "Unauthenticated.")
// is handled as a 401: one forced refresh, the request again with the
// fresh token, and the retry's answer.
func TestProxyRetriesAReplyTheProviderReadsAsRefused(t *testing.T) {
	r := newProxyRig(t, nil)
	rr := withRefusalReader(t, r)
	r.api.serve = graphQLAPI("at-1")
	resp, body := r.call(t, "POST", "graphql", strings.NewReader(`{"query":"{ me { id } }"}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	assert.JSONEq(t, `{"data":{"me":{"id":"1"}}}`, string(body), "the retry's answer, not the refusal")
	assert.Equal(t, proxyRetried, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, "active", resp.Header.Get(HeaderLinkStatus))
	assert.Equal(t, 1, r.temp.count(), "one refresh")
	seen := r.api.requests()
	require.Len(t, seen, 2)
	assert.Equal(t, "Bearer at-1", seen[0].Header.Get("Authorization"))
	assert.Equal(t, "Bearer at-2", seen[1].Header.Get("Authorization"))
	assert.Equal(t, seen[0].BodySum, seen[1].BodySum, "the retry carries the same body")
	assert.Equal(t, 1, rr.calls, "the retry's answer is relayed without a second look")
	assert.Equal(t, 1.0, counterValue(r.metrics.proxyUnauthorized.WithLabelValues("api", proxyRetried)))
}

// TestProxyRelaysARefusalThatOutlivesTheRefresh: when the fresh token is
// refused as well, the retry's reply is relayed as it is, and nothing is
// refreshed again.
func TestProxyRelaysARefusalThatOutlivesTheRefresh(t *testing.T) {
	r := newProxyRig(t, nil)
	withRefusalReader(t, r)
	r.api.serve = graphQLAPI("at-1", "at-2", "at-3")
	resp, body := r.call(t, "POST", "graphql", strings.NewReader(`{"query":"{ me { id } }"}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	assert.JSONEq(t, graphQLRefusal, string(body), "the provider's refusal, as it was")
	assert.Equal(t, proxyRetried, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, "upstream", resp.Header.Get(HeaderProxySource))
	assert.Equal(t, 1, r.temp.count(), "one refresh, not one per refusal")
	assert.Len(t, r.api.requests(), 2, "one retry")
}

// TestProxyPeekIsBounded: the provider is shown at most proxyPeekBytes
// of a reply; a large reply that is no refusal is relayed whole, and a
// provider without the capability is never shown a body.
func TestProxyPeekIsBounded(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 3*proxyPeekBytes+17)
	sum := sha256.Sum256(big)
	serve := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) }

	r := newProxyRig(t, nil)
	rr := withRefusalReader(t, r)
	r.api.serve = serve
	resp, body := r.call(t, "GET", "export", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := sha256.Sum256(body)
	assert.Equal(t, hex.EncodeToString(sum[:]), hex.EncodeToString(got[:]), "the reply was relayed whole")
	assert.Empty(t, resp.Header.Get(HeaderProxyRetry))
	assert.Equal(t, proxyPeekBytes, rr.largest, "the provider saw more than the peek")
	assert.Zero(t, r.temp.count())

	// Without the capability a 200 refusal is the caller's business.
	plain := newProxyRig(t, nil)
	plain.api.serve = graphQLAPI("at-1")
	resp, body = plain.call(t, "POST", "graphql", strings.NewReader(`{}`))
	assert.JSONEq(t, graphQLRefusal, string(body))
	assert.Empty(t, resp.Header.Get(HeaderProxyRetry))
	assert.Zero(t, plain.temp.count())
}
