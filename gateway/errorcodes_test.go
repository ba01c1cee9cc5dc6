package gateway

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestErrorCodeStatuses: every error code has one status, and README's
// table, openapi.json and the answers the code builds all agree with it.
func TestErrorCodeStatuses(t *testing.T) {
	codes := map[string]bool{}
	for c := range codeStatus {
		codes[c] = true
	}
	tick := regexp.MustCompile("`([a-z_]+)`")

	t.Run("README", func(t *testing.T) {
		b, err := os.ReadFile("../README.md")
		require.NoError(t, err)
		row := regexp.MustCompile("(?m)^\\| (`[a-z_]+`(?:, `[a-z_]+`)*) \\| (\\d{3}) \\|")
		seen := map[string]int{}
		for _, m := range row.FindAllStringSubmatch(string(b), -1) {
			status, _ := strconv.Atoi(m[2])
			for _, c := range tick.FindAllStringSubmatch(m[1], -1) {
				seen[c[1]] = status
			}
		}
		for c, want := range codeStatus {
			assert.Equalf(t, want, seen[c], "README's error table: %s", c)
		}
	})

	t.Run("OpenAPI", func(t *testing.T) {
		doc := loadOpenAPI(t)
		shared := doc["components"].(map[string]any)["responses"].(map[string]any)
		documented := map[string]bool{}
		for path, rawItem := range doc["paths"].(map[string]any) {
			for _, m := range httpMethods {
				op, ok := rawItem.(map[string]any)[m].(map[string]any)
				if !ok {
					continue
				}
				for status, rawResp := range op["responses"].(map[string]any) {
					resp := rawResp.(map[string]any)
					if ref, ok := resp["$ref"].(string); ok {
						resp = shared[strings.TrimPrefix(ref, "#/components/responses/")].(map[string]any)
					}
					desc, _ := resp["description"].(string)
					n, _ := strconv.Atoi(status)
					for _, c := range tick.FindAllStringSubmatch(desc, -1) {
						if !codes[c[1]] || (n < 400 && c[1] == CodeReauthRequired) {
							continue
						}
						documented[c[1]] = true
						assert.Equalf(t, codeStatus[c[1]], n, "%s %s: %s documented under %s", strings.ToUpper(m), path, c[1], status)
					}
				}
			}
		}
		for c := range codeStatus {
			if c != CodeUnknownField && c != CodeInvalidJSON && c != CodeBodyTooLarge && c != CodeRateLimited && c != CodeInternal {
				assert.Truef(t, documented[c], "openapi.json names %s nowhere", c)
			}
		}
	})

	t.Run("code", func(t *testing.T) {
		statuses := map[string]int{
			"StatusBadRequest": 400, "StatusUnauthorized": 401, "StatusNotFound": 404, "StatusConflict": 409,
			"StatusRequestEntityTooLarge": 413, "StatusUnsupportedMediaType": 415, "StatusUnprocessableEntity": 422, "StatusTooManyRequests": 429, "StatusInternalServerError": 500,
			"StatusBadGateway": 502, "StatusServiceUnavailable": 503,
		}
		constants := map[string]string{}
		src, err := os.ReadFile("errors.go")
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`(?m)^\s*(Code\w+)\s*=\s*"([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
			constants[m[1]] = m[2]
		}
		pairs := []*regexp.Regexp{
			regexp.MustCompile(`status:\s*http\.(Status\w+),\s*code:\s*(Code\w+)`),
			regexp.MustCompile(`newError\(http\.(Status\w+),\s*(Code\w+)`),
		}
		files, err := filepath.Glob("*.go")
		require.NoError(t, err)
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, re := range pairs {
				for _, m := range re.FindAllStringSubmatch(string(b), -1) {
					n++
					code, ok := constants[m[2]]
					require.Truef(t, ok, "%s: unknown constant %s", f, m[2])
					assert.Equalf(t, codeStatus[code], statuses[m[1]], "%s answers %s with %s", f, code, m[1])
				}
			}
			for _, m := range regexp.MustCompile(`errConflict\((Code\w+)`).FindAllStringSubmatch(string(b), -1) {
				n++
				assert.Equalf(t, http.StatusConflict, codeStatus[constants[m[1]]], "%s answers %s with 409", f, m[1])
			}
		}
		assert.Greater(t, n, 20, "the scan found the answers")
	})
}
