// Package deployments_test checks the deployable artifacts of deployments/:
// the container image (image_test.go), the one-server compose file
// (compose_test.go) and the Helm chart (helm_test.go). Everything is built
// or validated offline, without a container engine or a cluster. The tools
// (podman, docker-compose, helm) are looked for on PATH and in the tool
// cache of deployments/dev/tools.sh; a missing one skips its test, or
// fails it with TOKENWARDEN_REQUIRE_STACK=1 (make test).
// deployments/dev/deploy-tools.sh installs the apt ones.
package deployments_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// tool returns the path of a command-line tool, looking in dirs first and
// then on PATH. A missing tool skips the test, or fails it when the stack
// is required.
func tool(t *testing.T, name string, dirs ...string) string {
	t.Helper()
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := name + " is not installed; deployments/dev/deploy-tools.sh installs podman and docker-compose, deployments/dev/tools.sh builds helm"
	if os.Getenv("TOKENWARDEN_REQUIRE_STACK") == "1" {
		t.Fatal(msg + " (TOKENWARDEN_REQUIRE_STACK=1)")
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the repository's top directory (the tests run in
// deployments/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command and returns its standard output; it fails the test
// with the command's output when the command fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}
