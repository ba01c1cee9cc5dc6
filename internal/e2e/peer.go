package e2e

import (
	"fmt"

	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
)

// PeerClientCredentials is the Options of a stack whose catalog holds one
// provider, "peer": the OIDC test peer's confidential client, for client
// credentials, its secret in Vault.
func PeerClientCredentials(peer *oidcpeer.Peer) Options {
	return Options{
		VaultSecrets: map[string]map[string]string{"providers/peer": {"client_secret": peer.ClientSecret}},
		Catalog: fmt.Sprintf(`providers:
  - name: peer
    kind: oidc
    issuer: %s
    auth_style: header
    client_id: %s
    client_secret: {vault: "providers/peer#client_secret"}
    grants: [client_credentials]
`, peer.Issuer, peer.ClientID),
	}
}
