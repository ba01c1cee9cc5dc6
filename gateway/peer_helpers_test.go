package gateway_test

import (
	"fmt"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
)

// peerCatalog is the catalog of the end-to-end tests against the OIDC
// peer: provider "peer" (kind oidc, authorization_code with consent), with
// extra lines of that entry (indented four spaces) and further entries.
func peerCatalog(peer *oidcpeer.Peer, extra, moreEntries string) string {
	return fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    scopes: [openid, offline_access]
    grants: [authorization_code]
    auth_params: {prompt: consent}
`, peer.Issuer, peer.ClientID) + extra + moreEntries
}

// peerSecrets puts the peer's client secret where peerCatalog points.
func peerSecrets(peer *oidcpeer.Peer) map[string]map[string]string {
	return map[string]map[string]string{"providers/peer": {"client_secret": peer.ClientSecret}}
}
