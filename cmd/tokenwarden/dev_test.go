package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/browser"
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
	connectURL := make(chan string, 1)
	proxied := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Tokenwarden is running.") {
				close(running)
			}
			if u, ok := strings.CutPrefix(sc.Text(), "Connect page  "); ok {
				connectURL <- u
			}
			if p, ok := strings.CutPrefix(sc.Text(), "Proxy         "); ok {
				proxied <- p
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
		Links []struct{ ID, Provider, Status, LastError string } `json:"links"`
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

	devConnectPageWorks(t, connectURL)
	uiViewsWork(t, ui)
	// make dev shows a proxied call to a simulator.
	select {
	case p := <-proxied:
		if !strings.Contains(p, "-> 200 OK from the finAPI simulator") {
			t.Errorf("the proxied call make dev shows: %s", p)
		}
	case <-time.After(2 * time.Minute):
		t.Error("make dev printed no proxied call within 2 minutes")
	}
	for _, l := range links.Links {
		if l.Provider == "oidc-peer" {
			uiShowsLifecycle(t, ui, l.ID)
		}
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

// uiViewsWork runs each saved view's query through the Temporal UI's API:
// each parses, and on the demo links (all active, one per provider) the
// views find what they should.
func uiViewsWork(t *testing.T, ui string) {
	t.Helper()
	want := map[string]int{"needs re-authorization": 0, "degraded": 0, "one provider": 1, "next refresh overdue": 0}
	for _, v := range savedViews(time.Now(), "finapi") {
		var list struct {
			Executions []any `json:"executions"`
		}
		u := ui + "/api/v1/namespaces/tokenwarden/workflows?query=" + url.QueryEscape(v.Query)
		if code := getJSON(t, u, "", &list); code != http.StatusOK {
			t.Errorf("view %q: the Temporal UI answered HTTP %d to %s", v.Name, code, v.Query)
			continue
		}
		if len(list.Executions) != want[v.Name] {
			t.Errorf("view %q lists %d demo links, want %d", v.Name, len(list.Executions), want[v.Name])
		}
	}
}

// uiShowsLifecycle opens a demo link's page in the Temporal UI in a real
// browser, as an operator would, and finds without any query what the link
// is (static summary), where it stands and what happens next (current
// details), and why each timer and activity ran (their summaries), all
// decoded through the gateway's codec endpoint. The screenshots stay in
// .test-artifacts/browser (README's Operating section shows them).
func uiShowsLifecycle(t *testing.T, ui, linkID string) {
	t.Helper()
	page := ui + "/namespaces/tokenwarden/workflows/" + url.PathEscape(workflows.WorkflowID("default", linkID))
	res := browser.Walk(t, page, browser.ArtifactsDir(t, "browser"), 90*time.Second,
		browser.Step{Expect: []string{"sleep until refresh at", "refresh at oidc-peer (token expires", "Enroll at oidc-peer"},
			Screenshot: "temporal-ui-timeline.png"},
		browser.Step{Click: "User Metadata",
			Expect:     []string{"oidc-peer link " + linkID + " of client_credentials", "next: refresh at", ", run 1"},
			Screenshot: "temporal-ui-details.png"},
	)
	if !res.OK {
		t.Errorf("Temporal UI page of %s, step %d: missing %q %s (screenshots in .test-artifacts/browser)", linkID, res.Step, res.Missing, res.Error)
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
