package secrets_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tokenwarden/tokenwarden/internal/secrets"
)

func TestWebhookSecretRoundTrip(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.ReadWebhookSecret(ctx, "acme"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("read of a missing secret: %v, want ErrNotFound", err)
	}
	if err := s.WriteWebhookSecret(ctx, "acme", "whsec_one"); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteWebhookSecret(ctx, "acme", "whsec_two"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadWebhookSecret(ctx, "acme"); err != nil || got != "whsec_two" {
		t.Fatalf("read back: err %v (match %v)", err, got == "whsec_two")
	}
	if _, err := s.ReadWebhookSecret(ctx, "other"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("other tenant: %v, want ErrNotFound", err)
	}
	for range 2 { // deleting twice is fine
		if err := s.DeleteWebhookSecret(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ReadWebhookSecret(ctx, "acme"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if err := s.WriteWebhookSecret(ctx, "acme", ""); err == nil {
		t.Fatal("an empty secret was accepted")
	}
}
