package activities

import (
	"context"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestSuspendClearsATokenWrittenMeanwhile: an earlier refresh attempt
// stores the token it got between Suspend's read and its check-and-set
// write. Suspend must clear that token too, not take the lost race for
// done and leave a token of a dead grant in Vault.
func TestSuspendClearsATokenWrittenMeanwhile(t *testing.T) {
	vc, prefix := testenv.Vault(t)
	st := secrets.New(vc, testenv.StackInfo(t).VaultMount, prefix)
	a := &Activities{Secrets: st}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref := workflows.LinkRef{TenantID: "tenant", LinkID: "link"}
	v1, err := st.WriteToken(ctx, ref.TenantID, ref.LinkID, providers.Token{AccessToken: "access-1", RefreshToken: "refresh-1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	raced := false
	testHookSuspendRead = func() {
		if raced {
			return
		}
		raced = true
		if _, err := st.WriteToken(ctx, ref.TenantID, ref.LinkID, providers.Token{AccessToken: "access-2", RefreshToken: "refresh-2"}, v1); err != nil {
			t.Errorf("the racing write: %v", err)
		}
	}
	t.Cleanup(func() { testHookSuspendRead = nil })

	if err := a.Suspend(ctx, ref); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if !raced {
		t.Fatal("precondition: the racing write did not happen")
	}
	got, err := st.ReadToken(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Value.AccessToken != "" {
		t.Error("Suspend lost the race to a concurrent write and left that write's access token in Vault")
	}
	if got.Value.RefreshToken != "refresh-2" {
		t.Error("Suspend did not keep the newest refresh token")
	}
	access, err := st.ReadAccessToken(ctx, ref.TenantID, ref.LinkID)
	if err != nil {
		t.Fatal(err)
	}
	if access.Value.AccessToken != "" {
		t.Error("the gateway's access secret still holds a token after Suspend")
	}
}
