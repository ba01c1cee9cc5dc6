package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestDevStack runs `tokenwarden dev` as a user does (on shifted ports, in
// a private data folder) and checks what the README promises: health and
// readiness answer, the Temporal UI lists the engine's search attributes,
// one demo link per provider becomes active, and Ctrl-C stops everything.
func TestDevStack(t *testing.T) {
	binDir := testenv.ToolBinDir(t)
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "tokenwarden")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := testenv.StateDir(t)
	const offset = 21000
	cmd := exec.Command(bin, "dev", "-dir", dir, "-bin", binDir, "-port-offset", fmt.Sprint(offset))
	cmd.Dir = "../.." // the repository root: the dev catalog and the OIDC peer live there
	cmd.Env = append(os.Environ(), "TOKENWARDEN_CATALOG=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "dev-stderr.log")
	stderr, _ := os.Create(logPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	running := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Tokenwarden is running.") {
				close(running)
			}
		}
	}()
	select {
	case <-running:
	case <-time.After(4 * time.Minute):
		b, _ := os.ReadFile(logPath)
		t.Fatalf("tokenwarden dev did not come up in 4 minutes; stderr:\n%s", tail(string(b), 30))
	}

	gateway := fmt.Sprintf("http://127.0.0.1:%d", 8080+offset)
	ui := fmt.Sprintf("http://127.0.0.1:%d", 8233+offset)
	for _, path := range []string{"/healthz", "/readyz"} {
		var body map[string]any
		if code := getJSON(t, gateway+path, "", &body); code != http.StatusOK || body["status"] != "ok" {
			t.Fatalf("GET %s: %d %v", path, code, body)
		}
	}
	var sa struct {
		CustomAttributes map[string]string `json:"customAttributes"`
	}
	if code := getJSON(t, ui+"/api/v1/namespaces/tokenwarden/search-attributes", "", &sa); code != http.StatusOK {
		t.Fatalf("Temporal UI search attributes: HTTP %d", code)
	}
	for _, a := range workflows.SearchAttributes {
		if _, ok := sa.CustomAttributes[a.Name]; !ok {
			t.Errorf("the Temporal UI does not list search attribute %s", a.Name)
		}
	}

	// The Temporal UI decodes payloads through the gateway's codec
	// endpoint: from the UI's origin, and encrypted payloads come back
	// readable.
	codecReq := `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"ImhlbGxvIg=="}]}`
	enc := postJSON(t, gateway+"/codec/encode", ui, codecReq)
	if !strings.Contains(enc, "binary/encrypted") && !strings.Contains(enc, "YmluYXJ5L2VuY3J5cHRlZA") {
		t.Fatalf("/codec/encode did not encrypt: %.200s", enc)
	}
	if dec := postJSON(t, gateway+"/codec/decode", ui, enc); !strings.Contains(dec, "ImhlbGxvIg==") {
		t.Fatalf("/codec/decode did not give the payload back: %.200s", dec)
	}

	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, d := range demoLinks {
		want[d.Provider] = true
	}
	deadline := time.Now().Add(90 * time.Second)
	var links struct {
		Links []struct{ Provider, Status, LastError string } `json:"links"`
	}
	for {
		links.Links = nil
		getJSON(t, gateway+"/v1/links?limit=100", string(key), &links)
		active := map[string]bool{}
		for _, l := range links.Links {
			if l.Status == string(workflows.StatusActive) {
				active[l.Provider] = true
			}
		}
		if len(active) == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo links not all active after 90 s: %+v", links.Links)
		}
		time.Sleep(time.Second)
	}

	// Ctrl-C stops everything: the process exits cleanly and every port
	// it opened is free again.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tokenwarden dev exited with %v after Ctrl-C", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("tokenwarden dev did not stop within 60 s of Ctrl-C")
	}
	for _, port := range []int{7233, 8233, 8200, 5433, 8080, 9400, 9401} {
		addr := fmt.Sprintf("127.0.0.1:%d", port+offset)
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still answers after Ctrl-C", addr)
		}
	}
}

func getJSON(t *testing.T, url, apiKey string, into any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, into)
	return resp.StatusCode
}

func postJSON(t *testing.T, url, origin, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	req.Header.Set("X-Namespace", "tokenwarden")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d: %.200s", url, resp.StatusCode, b)
	}
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
