package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configEnv are the variables the validation cases may set; each case
// starts with all of them empty (t.Setenv restores them after).
var configEnv = []string{
	"TOKENWARDEN_TEMPORAL_ADDRESS", "TOKENWARDEN_TEMPORAL_TLS", "TOKENWARDEN_TEMPORAL_CA_FILE", "TOKENWARDEN_TEMPORAL_CERT_FILE",
	"TOKENWARDEN_TEMPORAL_KEY_FILE", "TOKENWARDEN_TEMPORAL_SERVER_NAME", "TOKENWARDEN_TEMPORAL_API_KEY",
	"TOKENWARDEN_DATABASE_URL", "TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT", "PGSSLMODE", "TOKENWARDEN_LOG_FORMAT",
	"TOKENWARDEN_PUBLIC_URL", "TOKENWARDEN_LISTEN", "TOKENWARDEN_STATS_INTERVAL", "TOKENWARDEN_RATE_LIMIT",
	"TOKENWARDEN_WRITE_TIMEOUT", "TOKENWARDEN_WORKER_STOP_TIMEOUT", "TOKENWARDEN_WORKER_OPS_LISTEN",
	"TOKENWARDEN_WORKER_WORKFLOW_CACHE", "TOKENWARDEN_WORKER_POLLERS",
}

// validateWith parses a worker's or gateway's flags from env and args, as
// runWorker and runGateway do, and validates them.
func validateWith(t *testing.T, role string, env map[string]string, args ...string) error {
	t.Helper()
	for _, k := range configEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	// A Vault credential, unless the case is about that.
	t.Setenv("VAULT_TOKEN", "validate-test-token")
	for k, v := range env {
		t.Setenv(k, v)
	}
	var c config
	fs := newFlagSet(role, io.Discard)
	c.register(fs)
	if role == roleWorker {
		c.registerWorker(fs)
		c.registerWorkerOps(fs)
	} else {
		c.registerGateway(fs)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags: %v", err)
	}
	return c.validate(role)
}

func TestValidate(t *testing.T) {
	pki := newTestPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	const remoteDB = "postgres://tw@db.example.com:5432/tw"
	for _, tc := range []struct {
		name string
		role string
		env  map[string]string
		args []string
		// want: one problem each, in words it must contain; none: valid.
		want [][]string
	}{
		{name: "worker defaults", role: roleWorker},
		{name: "no Vault credentials", role: roleWorker, env: map[string]string{"VAULT_TOKEN": ""},
			want: [][]string{{"no Vault credentials", "TOKENWARDEN_VAULT_ROLE_ID"}}},
		{name: "Kubernetes auth without a role", role: roleGateway, env: map[string]string{"TOKENWARDEN_VAULT_AUTH": "kubernetes"},
			want: [][]string{{"TOKENWARDEN_VAULT_K8S_ROLE"}}},
		{name: "gateway defaults", role: roleGateway},
		{name: "gateway on https", role: roleGateway, args: []string{"-listen", ":8080", "-public-url", "https://tokens.example.com/"}},
		{name: "http on loopback", role: roleGateway, env: map[string]string{"TOKENWARDEN_PUBLIC_URL": "http://localhost:8080"}},
		{name: "http elsewhere", role: roleGateway, env: map[string]string{"TOKENWARDEN_PUBLIC_URL": "http://tokens.example.com"},
			want: [][]string{{"-public-url (TOKENWARDEN_PUBLIC_URL)", "is not https", "https://"}}},
		{name: "public URL not a URL", role: roleGateway, args: []string{"-public-url", "tokens.example.com"},
			want: [][]string{{"-public-url (TOKENWARDEN_PUBLIC_URL)", "not an absolute http(s) URL"}}},
		{name: "listening wide without a public URL", role: roleGateway, env: map[string]string{"TOKENWARDEN_LISTEN": ":8080"},
			want: [][]string{{"-public-url (TOKENWARDEN_PUBLIC_URL) is not set", "-listen (TOKENWARDEN_LISTEN)"}}},
		{name: "database without TLS", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": remoteDB + "?sslmode=disable"},
			want: [][]string{{"-database-url (TOKENWARDEN_DATABASE_URL)", "db.example.com without TLS", "sslmode=verify-full", "TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT=1"}}},
		{name: "database, sslmode unset (prefer falls back to clear text)", role: roleGateway, env: map[string]string{"TOKENWARDEN_DATABASE_URL": remoteDB},
			want: [][]string{{"db.example.com without TLS"}}},
		{name: "database, PGSSLMODE=disable", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": remoteDB, "PGSSLMODE": "disable"},
			want: [][]string{{"db.example.com without TLS"}}},
		{name: "database with verify-full", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": remoteDB + "?sslmode=verify-full"}},
		{name: "database with require", role: roleWorker, args: []string{"-database-url", remoteDB + "?sslmode=require"}},
		{name: "database on loopback", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": "postgres://tw@[::1]:5432/tw?sslmode=disable"}},
		{name: "database on a Unix socket", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": "host=/var/run/postgresql dbname=tw"}},
		{name: "database on a trusted network", role: roleWorker, env: map[string]string{"TOKENWARDEN_DATABASE_URL": remoteDB + "?sslmode=disable",
			"TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT": "1"}},
		{name: "database URL does not parse", role: roleWorker, args: []string{"-database-url", "postgres://tw:hunter2@db:notaport/tw"},
			want: [][]string{{"-database-url (TOKENWARDEN_DATABASE_URL) does not parse"}}},
		{name: "TLS files without TLS", role: roleWorker, env: map[string]string{"TOKENWARDEN_TEMPORAL_CA_FILE": pki.caFile}, args: []string{"-temporal-server-name", "t"},
			want: [][]string{{"-temporal-ca-file (TOKENWARDEN_TEMPORAL_CA_FILE) is set but TLS to Temporal is off", "TOKENWARDEN_TEMPORAL_TLS=1"},
				{"-temporal-server-name (TOKENWARDEN_TEMPORAL_SERVER_NAME) is set"}}},
		{name: "API key in clear text", role: roleGateway, env: map[string]string{"TOKENWARDEN_TEMPORAL_API_KEY": "k", "TOKENWARDEN_TEMPORAL_TLS": "false"},
			want: [][]string{{"TOKENWARDEN_TEMPORAL_API_KEY is set but TLS to Temporal is off", "clear text"}}},
		{name: "API key over TLS", role: roleGateway, env: map[string]string{"TOKENWARDEN_TEMPORAL_API_KEY": "k"}},
		{name: "mTLS", role: roleWorker, args: []string{"-temporal-tls", "-temporal-ca-file", pki.caFile, "-temporal-cert-file", pki.cert, "-temporal-key-file", pki.key}},
		{name: "unreadable TLS files", role: roleWorker, args: []string{"-temporal-tls", "-temporal-ca-file", missing, "-temporal-cert-file", pki.cert}},
		{name: "bad TLS variable", role: roleWorker, env: map[string]string{"TOKENWARDEN_TEMPORAL_TLS": "yes please"},
			want: [][]string{{`TOKENWARDEN_TEMPORAL_TLS="yes please" is not 1, true, 0 or false`}}},
		{name: "Temporal address", role: roleWorker, args: []string{"-temporal-address", "temporal-frontend"},
			want: [][]string{{"-temporal-address (TOKENWARDEN_TEMPORAL_ADDRESS)", "not host:port"}}},
		{name: "log format", role: roleWorker, env: map[string]string{"TOKENWARDEN_LOG_FORMAT": "xml"},
			want: [][]string{{"-log-format (TOKENWARDEN_LOG_FORMAT)", "text nor json"}}},
		{name: "ops address", role: roleWorker, env: map[string]string{"TOKENWARDEN_WORKER_OPS_LISTEN": "9090"},
			want: [][]string{{"-ops-listen (TOKENWARDEN_WORKER_OPS_LISTEN)", "host:port"}}},
		{name: "ops port off", role: roleWorker, args: []string{"-ops-listen", ""}},
		{name: "worker stop timeout from the environment", role: roleWorker, env: map[string]string{"TOKENWARDEN_WORKER_STOP_TIMEOUT": "soon"},
			want: [][]string{{"TOKENWARDEN_WORKER_STOP_TIMEOUT", "positive duration"}}},
		{name: "worker cache and pollers", role: roleWorker, env: map[string]string{"TOKENWARDEN_WORKER_WORKFLOW_CACHE": "50000", "TOKENWARDEN_WORKER_POLLERS": "8"}},
		{name: "worker cache from the environment", role: roleWorker, env: map[string]string{"TOKENWARDEN_WORKER_WORKFLOW_CACHE": "lots"},
			want: [][]string{{"TOKENWARDEN_WORKER_WORKFLOW_CACHE", "positive integer"}}},
		{name: "worker cache of nothing", role: roleWorker, args: []string{"-workflow-cache", "0"},
			want: [][]string{{"-workflow-cache", "at least 1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unreadable TLS files" {
				tc.want = [][]string{{"-temporal-ca-file (TOKENWARDEN_TEMPORAL_CA_FILE)", missing, "no such file"},
					{"-temporal-cert-file and -temporal-key-file", "set both or neither"}}
			}
			err := validateWith(t, tc.role, tc.env, tc.args...)
			checkProblems(t, err, tc.want)
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the database password is in the message: %v", err)
			}
		})
	}
}

// checkProblems fails t unless err lists exactly the wanted problems.
func checkProblems(t *testing.T, err error, want [][]string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected problems: %v", err)
		}
		return
	}
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a configError", err)
	}
	if len(ce.problems) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ce.problems), len(want), err)
	}
	for i, words := range want {
		for _, w := range words {
			if !strings.Contains(ce.problems[i], w) {
				t.Errorf("problem %d %q does not say %q", i, ce.problems[i], w)
			}
		}
	}
	if exitCode(err) != 2 {
		t.Errorf("exit code %d, want 2", exitCode(err))
	}
}

// TestValidateListsEveryProblem: a gateway with six mistakes hears of all
// six in one message, not of the first one per restart.
func TestValidateListsEveryProblem(t *testing.T) {
	err := validateWith(t, roleGateway, map[string]string{
		"TOKENWARDEN_STATS_INTERVAL":   "often",
		"TOKENWARDEN_RATE_LIMIT":       "-3",
		"TOKENWARDEN_WRITE_TIMEOUT":    "20s",
		"TOKENWARDEN_PUBLIC_URL":       "http://tokens.example.com",
		"TOKENWARDEN_DATABASE_URL":     "postgres://tw@db.example.com/tw?sslmode=disable",
		"TOKENWARDEN_TEMPORAL_API_KEY": "k",
		"TOKENWARDEN_TEMPORAL_TLS":     "0",
	})
	checkProblems(t, err, [][]string{
		{`TOKENWARDEN_RATE_LIMIT="-3"`},
		{`TOKENWARDEN_STATS_INTERVAL="often"`},
		{"-write-timeout (TOKENWARDEN_WRITE_TIMEOUT) 20s is too short"},
		{"-public-url (TOKENWARDEN_PUBLIC_URL)"},
		{"TOKENWARDEN_TEMPORAL_API_KEY"},
		{"-database-url (TOKENWARDEN_DATABASE_URL)"},
	})
	if msg := err.Error(); !strings.HasPrefix(msg, "configuration has 6 problems:\n  - ") {
		t.Errorf("message:\n%s", msg)
	}
	if exitCode(errors.New("Vault is sealed")) != 1 {
		t.Error("other errors exit 1")
	}
}
