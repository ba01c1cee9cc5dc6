package workflows

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenInWorkflows are imports that mean I/O or non-determinism. The
// Temporal SDK links net/http itself (its gRPC transport), so the rule
// applies to this module's packages that the workflow package depends on;
// golang.org/x/oauth2 may not be linked at all.
var forbiddenInWorkflows = []string{
	"net", "net/http", "os", "os/exec", "database/sql", "math/rand", "math/rand/v2", "crypto/rand",
	"github.com/hashicorp/vault/api", "github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgxpool",
}

const module = "github.com/tokenwarden/tokenwarden"

// impurities lists the problems in `go list -deps -f '{{.ImportPath}}
// {{join .Imports ","}}'` output.
func impurities(listing string) []string {
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, "golang.org/x/oauth2") {
			problems = append(problems, "links "+pkg)
		}
		if pkg != module && !strings.HasPrefix(pkg, module+"/") {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			for _, bad := range forbiddenInWorkflows {
				if imp == bad {
					problems = append(problems, pkg+" imports "+imp)
				}
			}
		}
	}
	return problems
}

// TestWorkflowPackageIsPure: workflow code must replay deterministically,
// so nothing of ours that it imports may do I/O. (It once imported the
// providers package, HTTP clients and all, for one Schedule type.)
func TestWorkflowPackageIsPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports ","}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if p := impurities(string(out)); len(p) > 0 {
		t.Errorf("the workflow package must not depend on I/O:\n%s", strings.Join(p, "\n"))
	}
}

// TestImpuritiesFindsWhatItLooksFor plants what the check looks for.
func TestImpuritiesFindsWhatItLooksFor(t *testing.T) {
	listing := strings.Join([]string{
		"time ",
		"net/http io,net",
		module + "/workflows time," + module + "/providers",
		module + "/providers net/http,golang.org/x/oauth2",
		"golang.org/x/oauth2 net/http",
	}, "\n")
	got := impurities(listing)
	want := []string{module + "/providers imports net/http", "links golang.org/x/oauth2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("impurities = %q, want %q", got, want)
	}
}
