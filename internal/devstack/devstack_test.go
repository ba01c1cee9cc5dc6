package devstack_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestRestartsKeepVaultAndPostgresData(t *testing.T) {
	bin := testenv.ToolBinDir(t)
	opts := devstack.Options{Dir: testenv.StateDir(t), BinDir: bin, Log: testLog{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	began := time.Now()
	stack, err := testenv.StartPrivate(t, ctx, opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("fresh stack up in %s", time.Since(began).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = stack.Stop()
		}
	})
	info := stack.Info()

	for _, f := range []string{"stack.json", "vault/init.json", "vault/approle.json"} {
		st, err := os.Stat(filepath.Join(info.Dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if fromFile, err := devstack.ReadInfo(filepath.Join(info.Dir, "stack.json")); err != nil || fromFile != info {
		t.Fatalf("stack.json does not match Info (err=%v)", err)
	}
	if info.VaultToken == "" || info.VaultToken == info.VaultRootToken {
		t.Fatal("engine token is empty or the root token")
	}
	gatewayCannotReadWhatOnlyTheWorkerReads(ctx, t, info)

	kv := engineKV(t, info)
	const secretPath = "tokenwarden/devstack-test/link"
	if _, err := kv.Put(ctx, secretPath, map[string]any{"refresh_token": "fake-refresh"}); err != nil {
		t.Fatalf("write secret with the engine token: %v", err)
	}
	pg, err := pgx.Connect(ctx, info.PostgresURL)
	if err != nil {
		t.Fatalf("connect as tokenwarden: %v", err)
	}
	if _, err := pg.Exec(ctx, `CREATE TABLE survivors (name text); INSERT INTO survivors VALUES ('row-1')`); err != nil {
		t.Fatalf("write row: %v", err)
	}
	pg.Close(ctx)

	died := make(chan error, 1)
	go func() { died <- stack.Wait() }()

	// Restart each service alone, then everything from the same folder.
	if err := stack.StopVault(); err != nil {
		t.Fatalf("stop vault: %v", err)
	}
	if err := stack.StartVault(ctx); err != nil {
		t.Fatalf("restart vault (auto-unseal): %v", err)
	}
	if err := stack.StopPostgres(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	if err := stack.StartPostgres(ctx); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	if stack.Info().VaultToken != info.VaultToken {
		t.Error("engine token changed across a Vault restart")
	}
	checkData(ctx, t, stack.Info(), secretPath)
	select {
	case err := <-died:
		t.Fatalf("Wait returned after deliberate restarts: %v", err)
	default:
	}

	// A service dying on its own is reported through Wait, naming it.
	pid := readPID(t, filepath.Join(info.Dir, "run", "vault.pid"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill vault: %v", err)
	}
	select {
	case err := <-died:
		if err == nil || !strings.Contains(err.Error(), "vault") {
			t.Fatalf("Wait = %v, want an error naming vault", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not report the killed Vault")
	}
	if err := stack.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true

	began = time.Now()
	opts.Ports = stack.Ports()
	again, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("second start on the same folder: %v", err)
	}
	defer again.Stop()
	t.Logf("stack restarted on existing state in %s", time.Since(began).Round(time.Millisecond))
	if a := again.Info(); a.VaultRoleID != info.VaultRoleID || a.VaultSecretID != info.VaultSecretID ||
		a.VaultGatewayRoleID != info.VaultGatewayRoleID || a.VaultGatewaySecretID != info.VaultGatewaySecretID {
		t.Error("AppRole credentials changed across a full restart")
	}
	checkData(ctx, t, again.Info(), secretPath)
}

// gatewayCannotReadWhatOnlyTheWorkerReads: the stack's two identities
// are the shipped policies. The gateway's token reads a link's access
// token and is refused its refresh token and grant; the worker's reads
// all three.
func gatewayCannotReadWhatOnlyTheWorkerReads(ctx context.Context, t *testing.T, info devstack.Info) {
	t.Helper()
	if info.VaultGatewayToken == "" || info.VaultGatewayToken == info.VaultToken || info.VaultGatewayRoleID == info.VaultRoleID {
		t.Fatal("the gateway has no identity of its own")
	}
	const link = "tokenwarden/links/acme/lnk_dev/"
	worker, gateway := engineKV(t, info), kvAs(t, info, info.VaultGatewayToken)
	for _, part := range []string{"access", "refresh", "grant"} {
		if _, err := worker.Put(ctx, link+part, map[string]any{"v": "{}"}); err != nil {
			t.Fatalf("worker writes %s: %v", part, err)
		}
		if _, err := worker.Get(ctx, link+part); err != nil {
			t.Fatalf("worker reads %s: %v", part, err)
		}
		_, err := gateway.Get(ctx, link+part)
		var re *vaultapi.ResponseError
		refused := errors.As(err, &re) && re.StatusCode == 403
		if refused != (part != "access") {
			t.Errorf("gateway reads %s: %v", part, err)
		}
	}
}

func engineKV(t *testing.T, info devstack.Info) *vaultapi.KVv2 {
	t.Helper()
	return kvAs(t, info, info.VaultToken)
}

func kvAs(t *testing.T, info devstack.Info, token string) *vaultapi.KVv2 {
	t.Helper()
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: info.VaultAddress})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c.KVv2(info.VaultMount)
}

func checkData(ctx context.Context, t *testing.T, info devstack.Info, secretPath string) {
	t.Helper()
	sec, err := engineKV(t, info).Get(ctx, secretPath)
	if err != nil {
		t.Fatalf("read secret back: %v", err)
	}
	if sec.Data["refresh_token"] != "fake-refresh" {
		t.Fatal("secret changed across the restart")
	}
	pg, err := pgx.Connect(ctx, info.PostgresURL)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer pg.Close(ctx)
	var name string
	if err := pg.QueryRow(ctx, `SELECT name FROM survivors`).Scan(&name); err != nil || name != "row-1" {
		t.Fatalf("row after restart: %q, %v", name, err)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func TestStartReportsATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ports := testenv.FreePorts(t)
	ports.Vault = l.Addr().(*net.TCPAddr).Port
	_, err = devstack.Start(context.Background(), devstack.Options{Dir: t.TempDir(), BinDir: t.TempDir(), Ports: ports})
	if err == nil || !strings.Contains(err.Error(), "vault port") || !errors.Is(err, devstack.ErrPortTaken) {
		t.Fatalf("Start = %v, want ErrPortTaken naming the vault port", err)
	}
}
