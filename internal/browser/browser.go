// Package browser runs browser tests: walk.mjs drives Debian's chromium
// headless through playwright-core (npm, in this folder's node_modules,
// installed by `make browser-deps`) and reports what it found; screenshots
// stay as test artifacts.
package browser

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// Step is one step of a walk: optionally go to a URL, fill in form
// fields, click the button (else the link, else any element) with exactly
// this text, wait until every
// Expect text is on the page (frames included) and the page's URL
// contains ExpectURL, and take a screenshot.
type Step struct {
	Goto string `json:"goto,omitempty"`
	// Fill types values into form fields, each found by its label's
	// exact text, else by its name attribute.
	Fill       map[string]string `json:"fill,omitempty"`
	Click      string            `json:"click,omitempty"`
	Expect     []string          `json:"expect,omitempty"`
	ExpectURL  string            `json:"expect_url,omitempty"`
	Screenshot string            `json:"screenshot,omitempty"`
}

// Result is what the walk saw: the step it stopped at, the texts it did
// not find there (an ExpectURL not reached counts as missing, prefixed
// "url: "), and the page's URL when it stopped.
type Result struct {
	OK      bool     `json:"ok"`
	Step    int      `json:"step"`
	Missing []string `json:"missing"`
	Error   string   `json:"error,omitempty"`
	URL     string   `json:"url,omitempty"`
}

// Where is the page the walk stopped at, without its query and
// fragment (they may carry codes or states), for messages.
func (r Result) Where() string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

// ArtifactsDir is where screenshots go: $TOKENWARDEN_ARTIFACTS, else
// .test-artifacts at the repository root (ignored by git), so that they
// outlive the test for a person to look at.
func ArtifactsDir(t testing.TB, sub string) string {
	t.Helper()
	dir := os.Getenv("TOKENWARDEN_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(here(), "..", "..", ".test-artifacts")
	}
	dir = filepath.Join(dir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Walk runs the steps from url, screenshots into out. Without node,
// chromium or playwright-core it skips the test (fails it under
// TOKENWARDEN_REQUIRE_STACK=1, as `make test` sets).
func Walk(t testing.TB, url, out string, timeout time.Duration, steps ...Step) Result {
	t.Helper()
	node, chromium := need(t)
	spec, err := json.Marshal(map[string]any{"url": url, "out": out, "timeout_ms": timeout.Milliseconds(), "steps": steps})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(here(), "walk.mjs"), string(spec))
	cmd.Dir = here()
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser walk: %v\n%s", err, stderr.String())
	}
	var res Result
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		t.Fatalf("browser walk: reading its answer %q: %v", stdout.String(), err)
	}
	return res
}

func need(t testing.TB) (node, chromium string) {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatalf("browser test: %s", what)
		}
		t.Skipf("browser test: %s", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium is missing (deployments/dev/deploy-tools.sh installs it as root: apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join(here(), "node_modules", "playwright-core")); err != nil {
		missing("playwright-core is missing: run `make browser-deps`")
	}
	return node, chromium
}

// here is this package's folder, where walk.mjs and node_modules live.
func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}
