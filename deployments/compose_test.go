package deployments_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenwarden/tokenwarden/workflows"
)

// composeFile is the part of a (resolved) compose file the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image       string                    `yaml:"image"`
	Restart     string                    `yaml:"restart"`
	Healthcheck map[string]any            `yaml:"healthcheck"`
	Environment map[string]any            `yaml:"environment"`
	DependsOn   map[string]map[string]any `yaml:"depends_on"`
	Command     []string                  `yaml:"command"`
	StopGrace   string                    `yaml:"stop_grace_period"`
	Networks    map[string]any            `yaml:"networks"`
}

// imageRef splits an image reference into name, tag and digest.
var imageRef = regexp.MustCompile(`^([^@]+?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$`)

// unpinned says why an image reference is not pinned, or "" when it is:
// a tag other than latest, or a digest.
func unpinned(image string) string {
	if image == "" {
		return "no image"
	}
	if strings.Contains(image, "$") {
		return "unresolved variable"
	}
	if strings.HasSuffix(image, ":") {
		return "no tag" // an empty tag variable
	}
	m := imageRef.FindStringSubmatch(image)
	if m == nil {
		return "not an image reference"
	}
	// A registry port is not a tag: localhost:5000/x has no tag.
	if strings.Contains(m[1], ":") && !strings.Contains(m[1][strings.LastIndex(m[1], ":"):], "/") {
		return "not an image reference"
	}
	switch {
	case m[3] != "":
		return ""
	case m[2] == "":
		return "no tag"
	case m[2] == "latest":
		return "tag latest"
	}
	return ""
}

// pinProblems lists the services of a compose file whose image is not
// pinned.
func pinProblems(c composeFile) []string {
	var p []string
	for name, s := range c.Services {
		if why := unpinned(s.Image); why != "" {
			p = append(p, fmt.Sprintf("service %s: image %q is not pinned (%s)", name, s.Image, why))
		}
	}
	sort.Strings(p)
	return p
}

// TestImagePinCheckCatchesUnpinned plants unpinned images: the pin check
// must report each and pass the pinned ones.
func TestImagePinCheckCatchesUnpinned(t *testing.T) {
	for _, ok := range []string{"postgres:16.9", "temporalio/admin-tools:1.29.1-tctl-1.18.4-cli-1.5.0", "localhost:5000/tokenwarden:v1.2.3",
		"registry.example.com/x/y@sha256:" + strings.Repeat("ab", 32)} {
		if why := unpinned(ok); why != "" {
			t.Errorf("%s: reported unpinned (%s)", ok, why)
		}
	}
	for raw, want := range map[string]string{
		"${IMG:-localhost/tokenwarden}:${TAG:?set TAG}": "",
		"${IMG:-localhost/tokenwarden}:${TAG}":          "no tag",
		"${IMG:-localhost/tokenwarden}":                 "no tag",
		"postgres:${PG:-latest}":                        "tag latest",
	} {
		if got := unpinned(rawImage(raw)); got != want {
			t.Errorf("image line %s: %q, want %q", raw, got, want)
		}
	}
	planted := `
services:
  a: {image: postgres}
  b: {image: "postgres:latest"}
  c: {image: "localhost:5000/tokenwarden"}
  d: {image: "${TOKENWARDEN_IMAGE}"}
  e: {build: .}
  f: {image: "postgres:16.9"}
`
	var c composeFile
	if err := yaml.Unmarshal([]byte(planted), &c); err != nil {
		t.Fatal(err)
	}
	p := pinProblems(c)
	if len(p) != 5 {
		t.Fatalf("want 5 unpinned images reported (a-e), got %d: %v", len(p), p)
	}
	for i, s := range []string{"a", "b", "c", "d", "e"} {
		if !strings.HasPrefix(p[i], "service "+s+":") {
			t.Errorf("problem %d is %q, want one about service %s", i, p[i], s)
		}
	}
}

// rawImage resolves the variables of an image: line as an operator who
// sets nothing gets it: ${V:-default} is the default, ${V:?message} is a
// value the operator must give (a pin by variable), ${V} is empty.
func rawImage(s string) string {
	return regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?:(:-)([^}]*)|(:\?)[^}]*)?\}`).ReplaceAllStringFunc(s, func(v string) string {
		m := regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(:-)([^}]*)|(:\?)[^}]*)?\}$`).FindStringSubmatch(v)
		switch {
		case m[1] != "":
			return m[2]
		case m[3] != "":
			return "v1-required"
		}
		return ""
	})
}

// composeEnv is the environment the compose file is resolved with: the
// image tag it requires.
var composeEnv = []string{"TOKENWARDEN_VERSION=v0.0.0-composetest", "TOKENWARDEN_IMAGE=", "TOKENWARDEN_PUBLIC_URL="}

// TestCompose validates compose.yaml with docker-compose (v1.29 checks the
// schema and rejects unknown keys without an engine), then checks the
// resolved file: pinned images, restart policies and health checks, the
// one-shot migration before the engine, secrets as files, and no secret
// value in any environment.
func TestCompose(t *testing.T) {
	dc := tool(t, "docker-compose")
	dir := filepath.Join(repoRoot(t), "deployments", "compose")

	// docker-compose must reject a planted unknown key, or passing proves
	// nothing.
	bad := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  a:\n    image: postgres:16.9\n    restartt: always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(dir, nil, dc, "-f", bad, "config", "-q"); err == nil {
		t.Fatalf("docker-compose accepted an unknown key:\n%s", out)
	}
	// Without the image tag the file must refuse to resolve.
	if out, err := runErr(dir, []string{"TOKENWARDEN_VERSION="}, dc, "-f", "compose.yaml", "config", "-q"); err == nil {
		t.Errorf("compose.yaml resolved without TOKENWARDEN_VERSION:\n%s", out)
	}

	run(t, dir, composeEnv, dc, "-f", "compose.yaml", "config", "-q")
	resolved := run(t, dir, composeEnv, dc, "-f", "compose.yaml", "config")
	var c composeFile
	if err := yaml.Unmarshal(resolved, &c); err != nil {
		t.Fatalf("resolved compose file: %v", err)
	}
	for _, p := range pinProblems(c) {
		t.Error(p)
	}
	// The raw file too: a variable default must not hide an unpinned image.
	raw, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*image:\s*(.+?)\s*$`).FindAllStringSubmatch(string(raw), -1) {
		if why := unpinned(rawImage(m[1])); why != "" {
			t.Errorf("compose.yaml: image %s is not pinned (%s)", m[1], why)
		}
	}

	oneShot := map[string]bool{"temporal-schema": true, "temporal-setup": true, "migrate": true}
	// The image has no shell or HTTP client, so no in-container health check
	// is possible for these (see the comments in compose.yaml).
	noHealthcheck := map[string]bool{"worker": true, "gateway": true}
	for name, s := range c.Services {
		switch {
		case oneShot[name]:
			if !strings.HasPrefix(s.Restart, "on-failure") && s.Restart != "no" {
				t.Errorf("one-shot service %s: restart %q, want on-failure or no", name, s.Restart)
			}
		default:
			if s.Restart != "unless-stopped" && s.Restart != "always" {
				t.Errorf("service %s: restart %q, want unless-stopped", name, s.Restart)
			}
			if s.Healthcheck == nil && !noHealthcheck[name] {
				t.Errorf("service %s has no health check", name)
			}
		}
		for k, v := range s.Environment {
			if secretEnv(k, fmt.Sprint(v)) {
				t.Errorf("service %s: %s is set inline; secrets come from files (compose secrets)", name, k)
			}
		}
	}
	for _, svc := range []string{"worker", "gateway"} {
		dep := c.Services[svc].DependsOn["migrate"]
		if dep["condition"] != "service_completed_successfully" {
			t.Errorf("%s must wait for migrate to complete successfully, depends_on is %v", svc, c.Services[svc].DependsOn)
		}
	}
	if got := c.Services["migrate"].Command; len(got) != 1 || got[0] != "migrate" {
		t.Errorf("migrate runs %v, want [migrate]", got)
	}
	if g := c.Services["worker"].StopGrace; g != "3m" && g != "180s" && g != "3m0s" {
		t.Errorf("worker stop_grace_period is %q, want 180s (above the 150 s stop timeout)", g)
	}
	if len(c.Secrets) == 0 {
		t.Error("no compose secrets declared")
	}
	for name, s := range c.Secrets {
		if !strings.Contains(filepath.ToSlash(s.File), "/secrets/") {
			t.Errorf("secret %s is not a file under ./secrets: %q", name, s.File)
		}
	}
	// The gateway reaches Vault through its own proxy (its own identity),
	// never the worker's.
	for net := range c.Services["gateway"].Networks {
		if _, ok := c.Services["vault-proxy"].Networks[net]; ok {
			t.Errorf("the gateway shares network %s with the worker's Vault proxy", net)
		}
	}
	if got := c.Services["gateway"].Environment["VAULT_ADDR"]; got != "http://vault-proxy-gateway:8100" {
		t.Errorf("the gateway's VAULT_ADDR is %v, want its own proxy", got)
	}
	if v := c.Services["vault"]; strings.Contains(fmt.Sprint(v.Command), "-dev") {
		t.Error("vault runs in dev mode")
	}
	if strings.Contains(string(raw), "unseal") && regexp.MustCompile(`(?i)unseal[_-]?key`).MatchString(string(raw)) {
		t.Error("compose.yaml mentions an unseal key: Vault is never auto-unsealed from this directory")
	}
}

// secretEnv says whether an environment variable carries a secret value
// inline. VAULT_TOKEN=via-vault-proxy is the documented placeholder the
// proxy replaces.
func secretEnv(name, value string) bool {
	switch name {
	case "VAULT_TOKEN":
		return value != "via-vault-proxy"
	case "TOKENWARDEN_VAULT_ROLE_ID", "TOKENWARDEN_VAULT_SECRET_ID", "TOKENWARDEN_BOOTSTRAP_API_KEY",
		"TOKENWARDEN_CODEC_KEYS", "TOKENWARDEN_TEMPORAL_API_KEY", "POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD", "PGPASSWORD":
		return true
	}
	if strings.Contains(value, "://") && strings.Contains(value, "@") {
		// user:password@ in a URL
		userinfo := value[strings.Index(value, "://")+3 : strings.Index(value, "@")]
		return strings.Contains(userinfo, ":")
	}
	return false
}

// TestComposeSearchAttributes: the namespace setup of the compose stack
// registers exactly the engine's search attributes.
func TestComposeSearchAttributes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deployments", "compose", "temporal", "setup-namespace.sh"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^attr (\S+) (\S+)$`).FindAllStringSubmatch(string(b), -1) {
		got[m[1]] = m[2]
	}
	want := map[string]string{}
	for _, sa := range workflows.SearchAttributes {
		want[sa.Name] = sa.Type
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("setup-namespace.sh registers %v, workflows.SearchAttributes is %v", got, want)
	}
}
