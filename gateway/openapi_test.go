package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenAPIMatchesRoutes(t *testing.T) {
	ops, err := openAPIOperations()
	require.NoError(t, err)
	require.NotEmpty(t, ops)

	documented := make(map[openAPIOperation]bool, len(ops))
	for _, op := range ops {
		documented[op] = true
	}
	served := make(map[openAPIOperation]bool)
	for _, r := range New(Deps{}, Config{}).Routes() {
		served[openAPIOperation(r)] = true
	}
	require.NotEmpty(t, served)

	for op := range served {
		assert.Truef(t, documented[op], "route %s %s is served but not documented in openapi.json", op.Method, op.Path)
	}
	for op := range documented {
		assert.Truef(t, served[op], "openapi.json documents %s %s, which the server does not serve", op.Method, op.Path)
	}
}

func TestOpenAPIOperationsAreSorted(t *testing.T) {
	ops, err := openAPIOperations()
	require.NoError(t, err)
	assert.True(t, sort.SliceIsSorted(ops, func(i, j int) bool {
		return ops[i].Path < ops[j].Path || (ops[i].Path == ops[j].Path && ops[i].Method < ops[j].Method)
	}))
	assert.Contains(t, ops, openAPIOperation{Method: "GET", Path: "/v1/links/{id}/token"})
	assert.Contains(t, ops, openAPIOperation{Method: "DELETE", Path: "/v1/links/{id}"})
}

// loadOpenAPI decodes the embedded document generically.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(openAPIDocument, &doc), "openapi.json must be valid JSON")
	return doc
}

func TestOpenAPIDocumentShape(t *testing.T) {
	doc := loadOpenAPI(t)
	assert.Regexp(t, `^3\.1\.\d+$`, doc["openapi"])
	info, _ := doc["info"].(map[string]any)
	require.NotNil(t, info)
	assert.NotEmpty(t, info["title"])
	assert.NotEmpty(t, info["version"])

	components, _ := doc["components"].(map[string]any)
	schemes, _ := components["securitySchemes"].(map[string]any)
	bearer, _ := schemes["bearerAuth"].(map[string]any)
	require.NotNil(t, bearer, "components.securitySchemes.bearerAuth")
	assert.Equal(t, "http", bearer["type"])
	assert.Equal(t, "bearer", bearer["scheme"])
	assert.Equal(t, []any{map[string]any{"bearerAuth": []any{}}}, doc["security"], "API key required by default")
}

// walkRefs calls f with every "$ref" value in v and where it was found.
func walkRefs(v any, at string, f func(ref, at string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "$ref" {
				f(s, at)
				continue
			}
			walkRefs(e, at+"/"+k, f)
		}
	case []any:
		for i, e := range x {
			walkRefs(e, fmt.Sprintf("%s/%d", at, i), f)
		}
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	walkRefs(doc, "#", func(ref, at string) {
		n++
		if !assert.Truef(t, strings.HasPrefix(ref, "#/"), "%s: only local refs, got %q", at, ref) {
			return
		}
		var node any = doc
		for _, key := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[key]
		}
		assert.NotNilf(t, node, "%s: $ref %q does not resolve", at, ref)
	})
	assert.Greater(t, n, 20, "the document uses shared components")
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func TestOpenAPIOperationsAreComplete(t *testing.T) {
	doc := loadOpenAPI(t)
	components := doc["components"].(map[string]any)
	sharedParams := components["parameters"].(map[string]any)
	paths := doc["paths"].(map[string]any)
	ids := map[string]string{}
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)

	for path, rawItem := range paths {
		item := rawItem.(map[string]any)
		for _, m := range httpMethods {
			rawOp, ok := item[m]
			if !ok {
				continue
			}
			op := rawOp.(map[string]any)
			where := strings.ToUpper(m) + " " + path

			id, _ := op["operationId"].(string)
			if assert.NotEmptyf(t, id, "%s: operationId", where) {
				assert.NotContainsf(t, ids, id, "%s: operationId %q also used by %s", where, id, ids[id])
				ids[id] = where
			}
			assert.NotEmptyf(t, op["summary"], "%s: summary", where)
			responses, _ := op["responses"].(map[string]any)
			assert.NotEmptyf(t, responses, "%s: responses", where)

			// Every path parameter is declared, on the path or the operation.
			declared := map[string]bool{}
			params, _ := item["parameters"].([]any)
			ownParams, _ := op["parameters"].([]any)
			for _, p := range append(slices.Clone(params), ownParams...) {
				pm := p.(map[string]any)
				if ref, ok := pm["$ref"].(string); ok {
					pm = sharedParams[strings.TrimPrefix(ref, "#/components/parameters/")].(map[string]any)
				}
				if pm["in"] == "path" {
					declared[pm["name"].(string)] = true
					assert.Equalf(t, true, pm["required"], "%s: path parameter %v must be required", where, pm["name"])
				}
			}
			for _, match := range pathParam.FindAllStringSubmatch(path, -1) {
				assert.Truef(t, declared[match[1]], "%s: path parameter {%s} is not declared", where, match[1])
			}

			// The API key is required exactly on /v1, except where browsers
			// arrive from the provider.
			sec, overridden := op["security"]
			public := !strings.HasPrefix(path, "/v1/") || path == CallbackPath || strings.HasPrefix(path, CallbackPath+"/") || strings.HasPrefix(path, StartPath+"/")
			if public {
				assert.Truef(t, overridden && len(sec.([]any)) == 0, "%s must declare security: [] (no API key)", where)
			} else {
				assert.Falsef(t, overridden, "%s must keep the default bearer security", where)
				assert.Containsf(t, responses, "401", "%s: documents 401", where)
			}
		}
	}
}

func TestOpenAPIErrorCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	schema := doc["components"].(map[string]any)["schemas"].(map[string]any)["ErrorCode"].(map[string]any)
	var documented []string
	for _, c := range schema["enum"].([]any) {
		documented = append(documented, c.(string))
	}
	codes := []string{
		CodeBadRequest, CodeInvalidJSON, CodeUnknownField, CodeBodyTooLarge, CodeUnauthorized,
		CodeNotFound, CodeUnknownProvider, CodeUnsupportedGrant, CodeLinkRevoked, CodeReauthRequired,
		CodeLinkPending, CodeLinkFailed, CodeRateLimited, CodeUnavailable, CodeRefreshFailed,
		CodeConflict, CodeInternal, CodeUnsupportedMediaType, CodeIdempotencyMismatch,
		CodeProxyNotConfigured, CodeUpstreamUnavailable, CodeInsufficientScope,
	}
	assert.ElementsMatch(t, codes, documented)
}

func TestServeOpenAPI(t *testing.T) {
	h := New(Deps{}, Config{}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, openAPIDocument, rec.Body.Bytes())
}

func TestServeDocs(t *testing.T) {
	h := New(Deps{}, Config{}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	page := rec.Body.String()
	assert.Contains(t, page, `fetch("openapi.json"`)

	// Self-contained: nothing is loaded from elsewhere.
	assert.NotRegexp(t, `(?i)<(script|link|img|iframe)[^>]+(src|href)=`, page)
	assert.NotContains(t, page, "//cdn")

	// The CSP admits exactly the inline script and style the page has.
	csp := rec.Header().Get("Content-Security-Policy")
	script := between(t, page, "<script>", "</script>")
	style := between(t, page, "<style>", "</style>")
	assert.Contains(t, csp, "script-src '"+cspHash(script)+"'")
	assert.Contains(t, csp, "style-src '"+cspHash(style)+"'")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "connect-src 'self'")
}

// TestDocsScriptParses runs the page's script through node's syntax check,
// where node is installed; a typo there would only show in a browser.
func TestDocsScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; skipping the syntax check of the docs script")
	}
	f := filepath.Join(t.TempDir(), "docs.js")
	require.NoError(t, os.WriteFile(f, []byte(docsScript), 0o600))
	out, err := exec.Command(node, "--check", f).CombinedOutput()
	require.NoError(t, err, "docs script does not parse:\n%s", out)
}

func between(t *testing.T, s, open, closing string) string {
	t.Helper()
	i := strings.Index(s, open)
	require.GreaterOrEqual(t, i, 0, "missing %s", open)
	rest := s[i+len(open):]
	j := strings.Index(rest, closing)
	require.GreaterOrEqual(t, j, 0, "missing %s", closing)
	return rest[:j]
}
