package e2e

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// BuildTokenwarden builds cmd/tokenwarden to out, for tests that run the
// worker or gateway as processes of their own (to kill them, or to
// measure them apart), and returns out.
func BuildTokenwarden(t testing.TB, out string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/tokenwarden")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..") // the module root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokenwarden: %v\n%s", err, b)
	}
	return out
}
