package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultTenantID is the tenant the first migration creates, for
// single-tenant deployments.
const DefaultTenantID = "default"

// Tenant owns API keys and links; every query is scoped to one.
type Tenant struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

const tenantColumns = `id, name, created_at`

// EnsureTenant creates the tenant if it does not exist and returns it. An
// existing tenant keeps its name.
func (s *Store) EnsureTenant(ctx context.Context, id, name string) (Tenant, error) {
	if id == "" {
		return Tenant{}, errors.New("store: ensure tenant: empty id")
	}
	// The no-op DO UPDATE makes RETURNING yield the existing row too, in one
	// round trip and without a race between insert and select.
	var t Tenant
	err := s.pool.QueryRow(ctx, `
		INSERT INTO tenants (id, name) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
		RETURNING `+tenantColumns,
		id, name,
	).Scan(&t.ID, &t.Name, &t.CreatedAt)
	if err != nil {
		return Tenant{}, fmt.Errorf("store: ensure tenant %q: %w", id, err)
	}
	utc(&t.CreatedAt)
	return t, nil
}

// GetTenant returns the tenant or ErrNotFound.
func (s *Store) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := s.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, id).
		Scan(&t.ID, &t.Name, &t.CreatedAt)
	if err != nil {
		return Tenant{}, fmt.Errorf("store: get tenant %q: %w", id, noRows(err))
	}
	utc(&t.CreatedAt)
	return t, nil
}
