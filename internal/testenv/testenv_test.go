package testenv_test

import (
	"context"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/workflows"
)

func greet(ctx workflow.Context, name string) (string, error) {
	// Upserting proves the namespace carries the engine's attributes.
	if err := workflow.UpsertTypedSearchAttributes(ctx, workflows.StatusKey.ValueSet("active")); err != nil {
		return "", err
	}
	return "hello " + name, nil
}

func TestTemporalGivesAFreshWorkingNamespace(t *testing.T) {
	c, ns := testenv.Temporal(t)
	_, other := testenv.Temporal(t)
	if ns == other {
		t.Fatalf("two calls returned the same namespace %q", ns)
	}
	queue := testenv.Name(t, 60)
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(greet)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	defer w.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "greet-" + queue,
		TaskQueue:             queue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.TenantKey.ValueSet("acme")),
	}, greet, "tokenwarden")
	if err != nil {
		t.Fatalf("start workflow in %s: %v", ns, err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if got != "hello tokenwarden" {
		t.Fatalf("workflow returned %q", got)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	fields := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	for _, name := range []string{workflows.TenantKey.GetName(), workflows.StatusKey.GetName()} {
		if _, ok := fields[name]; !ok {
			t.Errorf("search attribute %s missing from the workflow; have %v", name, keys(fields))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestVaultPrefixIsPrivateAndCleanedUp(t *testing.T) {
	info := testenv.StackInfo(t)
	root, err := vaultapi.NewClient(&vaultapi.Config{Address: info.VaultAddress})
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(info.VaultRootToken)
	ctx := context.Background()

	var prefix string
	t.Run("inner", func(t *testing.T) {
		c, p := testenv.Vault(t)
		prefix = p
		if !strings.HasPrefix(p, "tokenwarden/test/") {
			t.Fatalf("prefix %q is outside tokenwarden/test/", p)
		}
		if self, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			t.Fatalf("lookup-self: %v", err)
		} else if policies, _ := self.TokenPolicies(); contains(policies, "root") ||
			!contains(policies, "tokenwarden-worker") && !contains(policies, "tokenwarden") {
			// "tokenwarden": the one policy of stacks started before the
			// worker and the gateway had one each.
			t.Fatalf("test client has policies %v, want the worker's and not root", policies)
		}
		kv := c.KVv2(info.VaultMount)
		if _, err := kv.Put(ctx, p+"/links/a", map[string]any{"access_token": "not-a-real-token"}); err != nil {
			t.Fatalf("write under prefix: %v", err)
		}
		sec, err := kv.Get(ctx, p+"/links/a")
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if sec.Data["access_token"] != "not-a-real-token" {
			t.Fatalf("read back a different value")
		}
		// The engine's policy stops at secret/tokenwarden/.
		_, err = kv.Put(ctx, "elsewhere/"+path.Base(p), map[string]any{"x": "y"})
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 403 {
			t.Fatalf("write outside tokenwarden/: got %v, want 403", err)
		}
	})
	if prefix == "" {
		t.Fatal("inner test did not run")
	}
	if _, err := root.KVv2(info.VaultMount).GetMetadata(ctx, prefix+"/links/a"); !errors.Is(err, vaultapi.ErrSecretNotFound) {
		t.Fatalf("secret under %s survived cleanup (err=%v)", prefix, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPostgresSchemaIsPrivateAndDropped(t *testing.T) {
	testenv.StackInfo(t) // skip here, not in the inner test
	ctx := context.Background()
	var schema string
	t.Run("inner", func(t *testing.T) {
		pool, s := testenv.Postgres(t)
		schema = s
		if _, err := pool.Exec(ctx, `CREATE TABLE links (id text PRIMARY KEY)`); err != nil {
			t.Fatalf("create table in %s: %v", s, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO links VALUES ('a')`); err != nil {
			t.Fatalf("insert: %v", err)
		}
		var where string
		if err := pool.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'links' AND table_schema = current_schema()`).Scan(&where); err != nil {
			t.Fatalf("find table: %v", err)
		}
		if where != s {
			t.Fatalf("table landed in %q, want %q", where, s)
		}
		// A second schema in the same test does not see the first's table.
		other, _ := testenv.Postgres(t)
		var n int
		if err := other.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'links' AND table_schema = current_schema()`).Scan(&n); err != nil {
			t.Fatalf("query other schema: %v", err)
		}
		if n != 0 {
			t.Fatalf("second schema sees the first's table")
		}
	})
	if schema == "" {
		t.Fatal("inner test did not run")
	}
	pool, _ := testenv.Postgres(t)
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("schema %s survived cleanup", schema)
	}
}

func TestNameIsUniqueAndShort(t *testing.T) {
	a, b := testenv.Name(t, 20), testenv.Name(t, 20)
	if a == b {
		t.Fatalf("Name returned %q twice", a)
	}
	if len(a) > 20 || strings.ContainsAny(a, "/_ ") {
		t.Fatalf("Name(20) = %q", a)
	}
}
