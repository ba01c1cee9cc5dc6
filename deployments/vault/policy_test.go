package vault

import (
	"regexp"
	"strings"
	"testing"
)

func TestForPrefixRewritesEveryPathRule(t *testing.T) {
	for name, policy := range map[string]string{"worker": WorkerPolicy, "gateway": GatewayPolicy} {
		t.Run(name, func(t *testing.T) {
			got := ForPrefix(policy, "kv/", "/tw/test/x")
			rules := regexp.MustCompile(`(?m)^path "([^"]*)"`).FindAllStringSubmatch(got, -1)
			if len(rules) == 0 {
				t.Fatal("no path rules")
			}
			for _, r := range rules {
				if !regexp.MustCompile(`^kv/(data|metadata|delete|undelete|destroy)/tw/test/x(/|$)`).MatchString(r[1]) {
					t.Errorf("rule %q was not rewritten", r[1])
				}
			}
			if ForPrefix(policy, Mount, Prefix) != policy {
				t.Error("the default mount and prefix changed the policy")
			}
		})
	}
}

// TestGatewayPolicyReadsOnlyWhatItNeeds keeps the gateway's policy from
// drifting: it may read or list only these paths, so never a refresh
// token, grant material or the earlier per-link layout. (The refusal
// itself is checked against a real Vault in internal/secrets.)
func TestGatewayPolicyReadsOnlyWhatItNeeds(t *testing.T) {
	readable := map[string]bool{
		"secret/data/tokenwarden/links/+/+/access":  true,
		"secret/data/tokenwarden/links/+/+/request": true,
		"secret/data/tokenwarden/webhooks/*":        true,
		"secret/data/tokenwarden/providers/*":       true,
		"secret/data/tokenwarden/codec":             true,
	}
	rules := regexp.MustCompile(`(?s)path "([^"]*)" \{\s*capabilities = \[([^\]]*)\]`).FindAllStringSubmatch(GatewayPolicy, -1)
	if len(rules) < len(readable) {
		t.Fatalf("parsed %d rules", len(rules))
	}
	for _, r := range rules {
		path, caps := r[1], r[2]
		if (strings.Contains(caps, `"read"`) || strings.Contains(caps, `"list"`)) && !readable[path] {
			t.Errorf("the gateway may read %s", path)
		}
	}
}
