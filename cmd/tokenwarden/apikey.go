package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenwarden/tokenwarden/internal/store"
)

const defaultDatabaseURL = "postgres://tokenwarden@127.0.0.1:5433/tokenwarden?sslmode=disable"

const apikeyUsage = `Usage: tokenwarden apikey <command> [flags]

Commands:
  create  --tenant T --name N [--rate R]   make a key (R requests/s of its own); it is printed once
  list    --tenant T            list the tenant's keys (never the keys themselves)
  revoke  --tenant T ID         revoke a key at once

API keys live in PostgreSQL; these commands talk to it directly, not to the
gateway. Every command takes --database-url (TOKENWARDEN_DATABASE_URL,
default ` + defaultDatabaseURL + `).
`

// dbConnectTimeout bounds reaching PostgreSQL, so that a wrong URL fails
// fast instead of hanging.
const dbConnectTimeout = 10 * time.Second

// revocationDelay is how long a gateway may keep accepting a revoked key:
// it caches key lookups (gateway.apiKeyCacheTTL, 30s).
const revocationDelay = "30 seconds"

// runAPIKey runs 'tokenwarden apikey ...'.
func runAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, apikeyUsage)
		return errors.New("no apikey command given; try 'tokenwarden apikey list --tenant default'")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "create":
		return apikeyCreate(ctx, rest, stdout, stderr)
	case "list":
		return apikeyList(ctx, rest, stdout, stderr)
	case "revoke":
		return apikeyRevoke(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, apikeyUsage)
		return nil
	}
	fmt.Fprint(stderr, apikeyUsage)
	return fmt.Errorf("unknown apikey command %q", cmd)
}

// dbFlags are the flags every apikey command shares.
type dbFlags struct {
	url    string
	tenant string
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.url, "database-url", env("TOKENWARDEN_DATABASE_URL", defaultDatabaseURL), "PostgreSQL URL (TOKENWARDEN_DATABASE_URL)")
	fs.StringVar(&d.tenant, "tenant", store.DefaultTenantID, "tenant that owns the keys")
}

// open connects to PostgreSQL and checks that it answers. The caller
// closes the pool.
func (d *dbFlags) open(ctx context.Context) (*store.Store, func(), error) {
	if strings.TrimSpace(d.tenant) == "" {
		return nil, nil, errors.New("--tenant must not be empty (the single-tenant default is 'default')")
	}
	cfg, err := pgxpool.ParseConfig(d.url)
	if err != nil {
		// Not quoting the URL or pgx's error, which quotes it: it may
		// carry a password.
		return nil, nil, errors.New("the database URL is not a valid PostgreSQL URL: set TOKENWARDEN_DATABASE_URL or pass --database-url, " +
			"e.g. postgres://user@host:5432/tokenwarden?sslmode=disable")
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, nil, &cliError{
			msg: fmt.Sprintf("PostgreSQL at %s:%d is unreachable: %v", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err),
			hint: "is it running ('tokenwarden dev' starts one)? Set TOKENWARDEN_DATABASE_URL or pass --database-url " +
				"to use another",
			err: err,
		}
	}
	return store.New(pool), pool.Close, nil
}

// dbError adds a hint to errors that have a well-known cause.
func dbError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return &cliError{msg: err.Error(), hint: "the database has no Tokenwarden tables yet: run 'tokenwarden migrate'", err: err}
	}
	return err
}

func apikeyCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("create", stderr)
	var d dbFlags
	d.register(fs)
	name := fs.String("name", "", "what the key is for, e.g. the calling service (required)")
	perSecond := fs.Float64("rate", 0, "this key's requests per second, instead of the gateway's -rate-limit (0: the gateway's)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("apikey create takes no arguments, got %q; name the key with --name", pos[0])
	}
	if strings.TrimSpace(*name) == "" {
		return errors.New("apikey create needs --name, e.g. --name billing-service")
	}
	if *perSecond < 0 {
		return errors.New("apikey create: --rate must be a positive number of requests per second (or 0 for the gateway's default)")
	}
	st, closeDB, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := st.EnsureTenant(ctx, d.tenant, d.tenant); err != nil {
		return dbError(err)
	}
	key, k, err := st.CreateAPIKey(ctx, d.tenant, *name)
	if err != nil {
		return dbError(err)
	}
	if *perSecond > 0 {
		if err := st.SetAPIKeyRateLimit(ctx, d.tenant, k.ID, *perSecond); err != nil {
			return dbError(err)
		}
		fmt.Fprintf(stderr, "the key may send %g requests per second\n", *perSecond)
	}
	// The key alone goes to stdout, so that KEY=$(tokenwarden apikey
	// create ...) works; everything else to stderr.
	fmt.Fprintf(stderr, "created API key %s (%q) for tenant %s\n", k.ID, k.Name, k.TenantID)
	fmt.Fprintln(stderr, "warning: this is the only time the key is shown; store it now (only its hash is kept)")
	_, err = fmt.Fprintln(stdout, key)
	return err
}

func apikeyList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("list", stderr)
	var d dbFlags
	d.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("apikey list takes no arguments, got %q", pos[0])
	}
	st, closeDB, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	keys, err := st.ListAPIKeys(ctx, d.tenant)
	if err != nil {
		return dbError(err)
	}
	if *asJSON {
		type keyView struct {
			ID         string     `json:"id"`
			TenantID   string     `json:"tenant_id"`
			Name       string     `json:"name"`
			Prefix     string     `json:"prefix"`
			CreatedAt  time.Time  `json:"created_at"`
			LastUsedAt *time.Time `json:"last_used_at"`
			RevokedAt  *time.Time `json:"revoked_at"`
		}
		out := make([]keyView, 0, len(keys))
		for _, k := range keys {
			out = append(out, keyView{k.ID, k.TenantID, k.Name, k.Prefix, k.CreatedAt, k.LastUsedAt, k.RevokedAt})
		}
		b, err := json.MarshalIndent(map[string]any{"api_keys": out}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintf(stderr, "tenant %s has no API keys; 'tokenwarden apikey create --tenant %s --name NAME' makes one\n", d.tenant, d.tenant)
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tLAST USED\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix+"…",
			k.CreatedAt.UTC().Format(time.RFC3339), timeOrDash(k.LastUsedAt), timeOrDash(k.RevokedAt))
	}
	return tw.Flush()
}

func apikeyRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("revoke", stderr)
	var d dbFlags
	d.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return errors.New("usage: tokenwarden apikey revoke --tenant T ID: give exactly one key id ('tokenwarden apikey list' shows them)")
	}
	id := pos[0]
	st, closeDB, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	k, err := st.RevokeAPIKey(ctx, d.tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return &cliError{
			msg:  fmt.Sprintf("tenant %s has no API key %s", d.tenant, id),
			hint: fmt.Sprintf("'tokenwarden apikey list --tenant %s' shows its keys", d.tenant),
			err:  err,
		}
	}
	if err != nil {
		return dbError(err)
	}
	_, err = fmt.Fprintf(stdout, "API key %s (%q) revoked at %s; gateways stop accepting it within %s\n",
		k.ID, k.Name, timeOrDash(k.RevokedAt), revocationDelay)
	return err
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
