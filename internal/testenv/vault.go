package testenv

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
)

// Vault returns a client holding the engine's own token (policy
// "tokenwarden", not root) and a path prefix inside the KV v2 mount that
// only this test uses, "tokenwarden/test/<test>-<random>". Everything under
// the prefix, all versions, is destroyed on cleanup.
func Vault(t testing.TB) (*vaultapi.Client, string) {
	t.Helper()
	info := StackInfo(t)
	c, err := vaultClient(info, info.VaultToken)
	if err != nil {
		t.Fatalf("testenv: vault client: %v", err)
	}
	prefix := "tokenwarden/test/" + Name(t, 80)
	t.Cleanup(func() {
		if os.Getenv(KeepStateEnv) != "" {
			return
		}
		root, err := vaultClient(info, info.VaultRootToken)
		if err != nil {
			t.Errorf("testenv: vault cleanup: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deleteTree(ctx, root, info.VaultMount, prefix); err != nil {
			t.Errorf("testenv: vault cleanup of %s: %v", prefix, err)
		}
	})
	return c, prefix
}

// KeepStateEnv, when set, skips the per-test cleanup of Vault secrets and
// the PostgreSQL schema: for runs on a throwaway stack that goes whole
// (make scale, whose thousands of links would take minutes to delete one
// secret at a time, and whose audit trail is worth a look afterwards).
const KeepStateEnv = "TOKENWARDEN_TEST_KEEP_STATE"

func vaultClient(info devstack.Info, token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = info.VaultAddress
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c, nil
}

// deleteTree removes every secret under prefix, all versions and metadata.
func deleteTree(ctx context.Context, c *vaultapi.Client, mount, prefix string) error {
	list, err := c.Logical().ListWithContext(ctx, path.Join(mount, "metadata", prefix))
	if err != nil {
		return err
	}
	if list != nil {
		keys, _ := list.Data["keys"].([]any)
		for _, k := range keys {
			name, _ := k.(string)
			child := path.Join(prefix, name)
			if strings.HasSuffix(name, "/") {
				if err := deleteTree(ctx, c, mount, child); err != nil {
					return err
				}
				continue
			}
			if _, err := c.Logical().DeleteWithContext(ctx, path.Join(mount, "metadata", child)); err != nil {
				return fmt.Errorf("delete %s: %w", child, err)
			}
		}
	}
	// A secret may also sit at the prefix itself.
	if _, err := c.Logical().DeleteWithContext(ctx, path.Join(mount, "metadata", prefix)); err != nil {
		return fmt.Errorf("delete %s: %w", prefix, err)
	}
	return nil
}
