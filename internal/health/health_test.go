package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"
)

func vaultAt(t *testing.T, url string) *vault.Client {
	t.Helper()
	c, err := vault.NewClient(&vault.Config{Address: url, MaxRetries: 0, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVaultStates(t *testing.T) {
	// Vault answers sys/health with the status code the caller asks for
	// each state (the client asks 299 for all of them).
	for name, tc := range map[string]struct {
		codeParam string
		body      string
		want      string
	}{
		"sealed":          {"sealedcode", `{"initialized":true,"sealed":true,"standby":false}`, "is sealed"},
		"not initialized": {"uninitcode", `{"initialized":false,"sealed":true,"standby":false}`, "is not initialized"},
		"healthy":         {"", `{"initialized":true,"sealed":false,"standby":false}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				status := 200
				if tc.codeParam != "" {
					status, _ = strconv.Atoi(r.URL.Query().Get(tc.codeParam))
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			err := Vault(vaultAt(t, srv.URL)).Probe(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("healthy Vault: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "Vault at "+srv.URL+" "+tc.want) {
				t.Fatalf("got %v, want a message naming Vault at %s and %q", err, srv.URL, tc.want)
			}
		})
	}
}

// TestWaitForNamesWhatIsMissing: the start-up wait says, in one line per
// change, which dependency is missing and where, and gives up with the
// same words when its context ends.
func TestWaitForNamesWhatIsMissing(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var out strings.Builder
	err = WaitFor(ctx, &out, Vault(vaultAt(t, "http://127.0.0.1:1")), Postgres(pool))
	if err == nil {
		t.Fatal("WaitFor returned nil with nothing running")
	}
	for _, want := range []string{"Vault at http://127.0.0.1:1 is unreachable", "PostgreSQL at 127.0.0.1:1 is unreachable"} {
		if !strings.Contains(out.String(), want) || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in the wait's output %q / error %q", want, out.String(), err)
		}
	}
	if strings.Count(out.String(), "\n") > 2 {
		t.Errorf("the same missing dependencies were printed again and again:\n%s", out.String())
	}
}
