package browser_test

import (
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/browser"
)

// The walker finds text in the page and in its frames (where the Temporal
// UI renders markdown), clicks, takes screenshots, and reports a text that
// is not there: a browser check can fail.
func TestWalkSeesFramesAndReportsWhatIsMissing(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p>on the page</p>
<button onclick="document.getElementById('late').textContent='after the click'">Show more</button>
<p id="late"></p><iframe srcdoc="<p>inside a frame</p>"></iframe>`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	out := t.TempDir()

	res := browser.Walk(t, srv.URL, out, 10*time.Second,
		browser.Step{Expect: []string{"on the page", "inside a frame"}, Screenshot: "page.png"},
		browser.Step{Click: "Show more", Expect: []string{"after the click"}},
	)
	if !res.OK {
		t.Fatalf("walk: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(out, "page.png")); err != nil {
		t.Fatalf("no screenshot: %v", err)
	}

	res = browser.Walk(t, srv.URL, out, 2*time.Second, browser.Step{Expect: []string{"on the page", "never there"}})
	if res.OK || res.Step != 0 || !slices.Equal(res.Missing, []string{"never there"}) {
		t.Fatalf("walk of a missing text = %+v, want step 0 missing [never there]", res)
	}
}

// The walker fills form fields by label or by name, clicks the submit
// button rather than a heading with the same words, and waits for a URL:
// what a walk through a sign-in form needs.
func TestWalkFillsFormsAndFollowsURLs(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><title>form</title><form action="/hello" method="get">
<h1>Say hello</h1><label for="n">Your name</label><input id="n" name="name"><input name="nick" placeholder="no label">
<button type="submit">Say hello</button></form>`))
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!doctype html><title>hi</title><p>Hello " + html.EscapeString(r.URL.Query().Get("name")) +
			" aka " + html.EscapeString(r.URL.Query().Get("nick")) + "</p>"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res := browser.Walk(t, srv.URL, t.TempDir(), 10*time.Second,
		browser.Step{Fill: map[string]string{"Your name": "Ada", "nick": "countess"}, Click: "Say hello",
			Expect: []string{"Hello Ada aka countess"}, ExpectURL: "/hello?"},
	)
	if !res.OK || !strings.Contains(res.URL, "nick=countess") || res.Where() != srv.URL+"/hello" {
		t.Fatalf("walk: %+v (where %s)", res, res.Where())
	}

	res = browser.Walk(t, srv.URL, t.TempDir(), 2*time.Second, browser.Step{ExpectURL: "/elsewhere"})
	if res.OK || !slices.Equal(res.Missing, []string{"url: /elsewhere"}) {
		t.Fatalf("walk to a URL never reached = %+v, want missing [url: /elsewhere]", res)
	}
}
