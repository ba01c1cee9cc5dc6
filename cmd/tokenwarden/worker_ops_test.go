package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/oidcpeer"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/workflows"
)

var (
	builtOnce sync.Once
	builtBin  string
	builtErr  error
)

// tokenwardenBinary builds this command once per test run.
func tokenwardenBinary(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		// Shared by the tests of this run, so not in one test's TempDir;
		// one file in the git-ignored .test-artifacts, replaced by a rename
		// so that a run still using the previous one keeps it.
		dir, err := filepath.Abs(filepath.Join("..", "..", ".test-artifacts", "bin"))
		if err == nil {
			builtBin = filepath.Join(dir, "tokenwarden-cmdtest")
			tmp := fmt.Sprintf("%s.%d", builtBin, os.Getpid())
			var out []byte
			if out, err = exec.Command("go", "build", "-o", tmp, ".").CombinedOutput(); err != nil {
				err = fmt.Errorf("go build: %v\n%s", err, out)
			} else {
				err = os.Rename(tmp, builtBin)
			}
		}
		builtErr = err
	})
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return builtBin
}

// TestWorkerConfigExitCode: `tokenwarden worker` with several mistakes
// lists them all and exits 2, before dialling anything.
func TestWorkerConfigExitCode(t *testing.T) {
	bin := tokenwardenBinary(t)
	cmd := exec.Command(bin, "worker", "-temporal-ca-file", "/nonexistent/ca.pem", "-log-format", "xml",
		"-database-url", "postgres://tw@db.example.com/tw?sslmode=disable")
	cmd.Env = []string{"TOKENWARDEN_STATS_INTERVAL=soon", "TOKENWARDEN_WORKER_STOP_TIMEOUT=later"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2\n%s", err, out)
	}
	for _, want := range []string{"configuration has 5 problems", "no Vault credentials", "TOKENWARDEN_WORKER_STOP_TIMEOUT=\"later\"",
		"-temporal-ca-file (TOKENWARDEN_TEMPORAL_CA_FILE) is set but TLS to Temporal is off", "-database-url (TOKENWARDEN_DATABASE_URL)",
		"-log-format (TOKENWARDEN_LOG_FORMAT)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

// TestWorkerProcessOps runs `tokenwarden worker` as a deployment does:
// to Temporal over mTLS (a TLS-terminating proxy in front of the shared
// stack's frontend that requires the test CA's client certificate), JSON
// logs, and its ops port. /healthz and /readyz answer, the link it
// serves refreshes on schedule, and /metrics carries the Temporal SDK's
// metrics and the refresh lag; SIGTERM stops it cleanly.
func TestWorkerProcessOps(t *testing.T) {
	testenv.StackInfo(t)
	t.Parallel()
	peer := oidcpeer.StartT(t, oidcpeer.Options{AccessTokenTTL: 4 * time.Second})
	o := e2e.PeerClientCredentials(peer)
	o.NoWorker = true
	s := e2e.Start(t, o)
	bin := tokenwardenBinary(t)
	pki := newTestPKI(t)
	px := startTLSProxy(t, pki, s.Info.TemporalAddress)

	var stderr syncBuffer
	cmd := exec.Command(bin, "worker", "-ops-listen", "127.0.0.1:0", "-log-format", "json", "-stop-timeout", "20s")
	cmd.Env = append(s.Env(),
		"TOKENWARDEN_TEMPORAL_ADDRESS="+px.addr,
		"TOKENWARDEN_TEMPORAL_TLS=1",
		"TOKENWARDEN_TEMPORAL_CA_FILE="+pki.caFile,
		"TOKENWARDEN_TEMPORAL_CERT_FILE="+pki.cert,
		"TOKENWARDEN_TEMPORAL_KEY_FILE="+pki.key,
		"TOKENWARDEN_TEMPORAL_SERVER_NAME=temporal.test",
	)
	cmd.Stdout = s.Logs
	cmd.Stderr = io.MultiWriter(&stderr, s.Logs) // the leak scan reads s.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	})

	ops := waitOpsAddress(t, &stderr, exited)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ops + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	pollUntil(t, 60*time.Second, "/readyz 200", func() (bool, string) {
		code, body := get("/readyz")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	link, err := s.Client.CreateLink(ctx, tokenwarden.CreateLinkRequest{Provider: "peer", UserID: "svc", Grant: tokenwarden.GrantClientCredentials}, "")
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	s.WaitFor(ctx, link.ID, "two scheduled refreshes", func(st workflows.State) bool { return st.Refreshes >= 2 })
	s.Token(ctx, link.ID) // for the leak scan

	var metrics string
	pollUntil(t, 30*time.Second, "the refresh metrics", func() (bool, string) {
		_, metrics = get("/metrics")
		return metricValue(metrics, `tokenwarden_refresh_lag_seconds_count{provider="peer"}`) >= 1 &&
			metricValue(metrics, `tokenwarden_refresh_old_token_remaining_seconds_count{provider="peer"}`) >= 1, metrics
	})
	if metricValue(metrics, `tokenwarden_refresh_attempts_total{outcome="ok",provider="peer"}`) < 2 {
		t.Errorf("/metrics: refresh attempts:\n%s", grepLines(metrics, "^tokenwarden_refresh_attempts_total"))
	}
	// The SDK's: polls of both task queues (the "worker not polling"
	// alert reads them) and the Refresh activity's latency.
	for _, want := range [][]string{
		{"temporal_long_request_total", `operation="PollActivityTaskQueue"`, `namespace="` + s.Namespace + `"`},
		{"temporal_long_request_total", `operation="PollWorkflowTaskQueue"`},
		{"temporal_activity_execution_latency_seconds_count", `activity_type="Refresh"`, `task_queue="tokenwarden-links"`},
	} {
		if seriesSum(metrics, want[0], want[1:]...) < 1 {
			t.Errorf("/metrics: no %v in\n%s", want, grepLines(metrics, "^"+want[0]))
		}
	}
	for _, family := range []string{"tokenwarden_dependency_errors_total", "temporal_worker_task_slots_available", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(metrics, "\n"+family) {
			t.Errorf("/metrics: no %s", family)
		}
	}
	// A scheduled refresh runs within seconds of its due time here.
	if sum := metricValue(metrics, `tokenwarden_refresh_lag_seconds_sum{provider="peer"}`); sum/metricValue(metrics, `tokenwarden_refresh_lag_seconds_count{provider="peer"}`) > 10 {
		t.Errorf("mean refresh lag %.1fs", sum)
	}
	if accepted, _ := px.counts(); accepted == 0 {
		t.Error("the worker did not connect through the TLS proxy")
	}

	// SIGTERM: /readyz turns 503 at once, the process exits 0.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("worker exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the worker did not stop within 60s of SIGTERM")
	}
	for i, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("stderr line %d is not JSON: %s", i+1, line)
		}
	}
	s.ScanForSecrets(ctx)
}

// waitOpsAddress reads the ops port's address from the worker's JSON log.
func waitOpsAddress(t *testing.T, stderr *syncBuffer, exited chan error) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var rec struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "worker ops listening" {
				return rec.Address
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the worker exited (%v):\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no ops address logged within 60s:\n%s", stderr.String())
	return ""
}

// pollUntil polls cond until it holds or limit passes.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %.2000s", what, limit, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metricValue is the value of one series in a text exposition, 0 when it
// is absent.
func metricValue(exposition, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func grepLines(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// seriesSum adds the values of the series of family name that carry every
// one of labels (as name="value").
func seriesSum(exposition, name string, labels ...string) float64 {
	var sum float64
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(exposition, -1) {
		all := true
		for _, l := range labels {
			all = all && strings.Contains(","+m[1]+",", ","+l+",")
		}
		if all {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestVaultTokenCheck: /readyz's Vault check passes with a token Vault
// takes and fails, saying so, with one it refuses.
func TestVaultTokenCheck(t *testing.T) {
	vc, prefix := testenv.Vault(t)
	info := testenv.StackInfo(t)
	t.Parallel()
	ctx := context.Background()
	if err := vaultTokenCheck(vc, info.VaultMount, prefix).Probe(ctx); err != nil {
		t.Fatalf("with the stack's token: %v", err)
	}
	bad, err := vc.Clone()
	if err != nil {
		t.Fatal(err)
	}
	bad.SetToken("hvs.not-a-token")
	err = vaultTokenCheck(bad, info.VaultMount, prefix).Probe(ctx)
	if err == nil || !strings.Contains(err.Error(), "the worker's token is refused by Vault") || strings.Contains(err.Error(), "not-a-token") {
		t.Fatalf("with a token Vault refuses: %v", err)
	}
}
