package workflows

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenInWorkflows are imports that mean I/O or non-determinism. The
// rule applies to this module's packages that the workflow package
// depends on: the Temporal SDK links net/http itself (see
// TestWorkflowPackageIsPure).
var forbiddenInWorkflows = []string{
	"net", "net/http", "os", "os/exec", "database/sql", "math/rand", "math/rand/v2", "crypto/rand",
	"github.com/hashicorp/vault/api", "github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgxpool",
}

const (
	module = "github.com/tokenwarden/tokenwarden"
	oauth2 = "golang.org/x/oauth2"
)

// impurities lists the problems in `go list -deps -f '{{.ImportPath}}
// {{join .Imports ","}}'` output.
func impurities(listing string) []string {
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg == oauth2 || strings.HasPrefix(pkg, oauth2+"/") {
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
//
// The requirement reads "go list -deps ./workflows lists no net/http and
// no golang.org/x/oauth2". Taken literally it cannot hold for any
// workflow package: the Temporal SDK it must import links net/http itself
// (google.golang.org/grpc's transport, go.temporal.io/sdk/converter, the
// API's HTTP gateway), and workflow code reaches the SDK only through its
// deterministic workflow API. So the test checks it as follows, on
// `go list -deps` of this package (run in workflows/, that is
// `go list -deps ./workflows`, test files excluded):
//   - golang.org/x/oauth2, or any package under it, is not listed at all
//     (literally as required: provider code is not linked);
//   - no package of this module in the list imports net/http or another
//     forbiddenInWorkflows package, so net/http is in the list only
//     because packages outside the module (the SDK and its dependencies)
//     import it.
func TestWorkflowPackageIsPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports ","}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if !strings.Contains("\n"+string(out), "\n"+module+"/workflows ") {
		t.Fatalf("go list -deps does not list %s/workflows: the check would pass on nothing", module)
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
		"golang.org/x/oauth2/internal net/http",
		"golang.org/x/oauth2x ",
	}, "\n")
	got := impurities(listing)
	want := []string{module + "/providers imports net/http", "links golang.org/x/oauth2", "links golang.org/x/oauth2/internal"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("impurities = %q, want %q", got, want)
	}
}
