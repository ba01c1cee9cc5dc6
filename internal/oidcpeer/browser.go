package oidcpeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// maxSteps bounds how many pages a scripted login may pass through; the
// dev interactions need at most five.
const maxSteps = 12

// devPassword fills the dev login form, which accepts any password.
const devPassword = "peer-dev-password"

// Login signs username in on the peer's dev interaction pages and grants
// consent, starting at authURL, a complete authorization request built by
// the caller. It returns the redirect to the request's redirect_uri (with
// code and state) without requesting it. A redirect that carries an OAuth
// error is returned together with an error naming it.
func (p *Peer) Login(ctx context.Context, authURL, username string) (*url.URL, error) {
	if username == "" {
		return nil, errors.New("oidc peer login: empty username")
	}
	au, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("oidc peer login: parsing authorization URL: %w", err)
	}
	redirect, err := url.Parse(au.Query().Get("redirect_uri"))
	if err != nil || redirect.Host == "" {
		return nil, errors.New("oidc peer login: authorization URL has no absolute redirect_uri")
	}

	var final *url.URL
	client, err := browser(func(u *url.URL) bool {
		if sameEndpoint(u, redirect) {
			final = u
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}

	resp, err := get(ctx, client, authURL)
	if err != nil {
		return nil, fmt.Errorf("oidc peer login: %w", err)
	}
	for step := 0; ; step++ {
		if final != nil {
			resp.Body.Close()
			if code := final.Query().Get("error"); code != "" {
				return final, fmt.Errorf("oidc peer login: authorization failed: %s: %s", code, final.Query().Get("error_description"))
			}
			return final, nil
		}
		if step == maxSteps {
			resp.Body.Close()
			return nil, fmt.Errorf("oidc peer login: no redirect to %s after %d pages", redirect.Redacted(), maxSteps)
		}
		page, err := readPage(resp)
		if err != nil {
			return nil, fmt.Errorf("oidc peer login: %w", err)
		}
		f, ok := page.form()
		if !ok {
			return nil, fmt.Errorf("oidc peer login: page %s has no form: %s", page.url.Path, page.text())
		}
		f.fill(map[string]string{"login": username, "password": devPassword})
		resp, err = f.submit(ctx, client)
		if err != nil {
			return nil, fmt.Errorf("oidc peer login: %w", err)
		}
	}
}

// ApproveDevice enters userCode on the peer's device verification page,
// confirms it, signs username in and grants consent, as the person holding
// the second device would.
func (p *Peer) ApproveDevice(ctx context.Context, userCode, username string) error {
	if userCode == "" || username == "" {
		return errors.New("oidc peer device approval: empty user code or username")
	}
	client, err := browser(func(*url.URL) bool { return false })
	if err != nil {
		return err
	}
	verify, err := url.Parse(p.Issuer + "/device")
	if err != nil {
		return fmt.Errorf("oidc peer device approval: %w", err)
	}
	resp, err := get(ctx, client, verify.String())
	if err != nil {
		return fmt.Errorf("oidc peer device approval: %w", err)
	}
	for step := 0; step < maxSteps; step++ {
		page, err := readPage(resp)
		if err != nil {
			return fmt.Errorf("oidc peer device approval: %w", err)
		}
		// The success and error markup come from oidc-provider's default
		// deviceFlow sources, which peer.mjs keeps.
		if strings.Contains(page.body, "Sign-in Success") {
			return nil
		}
		if msg := page.errorMessage(); msg != "" {
			return fmt.Errorf("oidc peer device approval: %s", msg)
		}
		f, ok := page.form()
		if !ok {
			return fmt.Errorf("oidc peer device approval: page %s has no form: %s", page.url.Path, page.text())
		}
		f.fill(map[string]string{"user_code": userCode, "login": username, "password": devPassword})
		resp, err = f.submit(ctx, client)
		if err != nil {
			return fmt.Errorf("oidc peer device approval: %w", err)
		}
	}
	resp.Body.Close()
	return fmt.Errorf("oidc peer device approval: not finished after %d pages", maxSteps)
}

// browser is an HTTP client with its own cookie jar (one session per call)
// that stops before following a redirect for which stop reports true.
func browser(stop func(*url.URL) bool) (*http.Client, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("cookie jar: %w", err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if stop(req.URL) {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}, nil
}

func sameEndpoint(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && a.Host == b.Host && strings.TrimSuffix(a.Path, "/") == strings.TrimSuffix(b.Path, "/")
}

func get(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redactURL(req.URL), transportErr(err))
	}
	return resp, nil
}

// transportErr unwraps *url.Error, whose message repeats the full URL of
// the last redirect, query and all.
func transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL drops the query, which may carry codes or states.
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment = "", ""
	return c.Redacted()
}

type page struct {
	url  *url.URL
	body string
	doc  *html.Node
}

func readPage(resp *http.Response) (*page, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", redactURL(resp.Request.URL), err)
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", redactURL(resp.Request.URL), err)
	}
	p := &page{url: resp.Request.URL, body: string(b), doc: doc}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d: %s", redactURL(resp.Request.URL), resp.StatusCode, p.text())
	}
	return p, nil
}

// text is the page's visible text, shortened, for error messages. The
// peer's pages never show tokens.
func (p *page) text() string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") {
			return
		}
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
			sb.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.doc)
	t := strings.Join(strings.Fields(sb.String()), " ")
	if len(t) > 300 {
		t = t[:300] + "…"
	}
	return t
}

// errorMessage is the text of a <p class="red"> element, which is how the
// device pages report a wrong, expired or used code.
func (p *page) errorMessage() string {
	var msg string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if msg != "" {
			return
		}
		if n.Type == html.ElementNode && n.Data == "p" && attr(n, "class") == "red" && n.FirstChild != nil {
			msg = strings.TrimSpace(n.FirstChild.Data)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.doc)
	return msg
}

type form struct {
	action *url.URL
	fields url.Values
}

// form returns the page's first POST form with its inputs' values.
func (p *page) form() (*form, bool) {
	var found *html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if found != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" && strings.EqualFold(attr(n, "method"), "post") {
			found = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.doc)
	if found == nil {
		return nil, false
	}
	action, err := p.url.Parse(attr(found, "action"))
	if err != nil {
		return nil, false
	}
	f := &form{action: action, fields: url.Values{}}
	var inputs func(*html.Node)
	inputs = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			if name := attr(n, "name"); name != "" {
				f.fields.Set(name, attr(n, "value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			inputs(c)
		}
	}
	inputs(found)
	return f, true
}

// fill sets the fields the form has and leaves others alone.
func (f *form) fill(values map[string]string) {
	for k, v := range values {
		if _, ok := f.fields[k]; ok {
			f.fields.Set(k, v)
		}
	}
}

func (f *form) submit(ctx context.Context, client *http.Client) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.action.String(), strings.NewReader(f.fields.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", redactURL(f.action), transportErr(err))
	}
	return resp, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
