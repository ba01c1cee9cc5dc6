package finapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/generic"
)

// Secrets of the fuzzed refresh: the request carries them, so finAPI may
// echo them ("Invalid refresh token: <the token>").
const (
	fuzzRefresh = "rt-SECRET-fuzz-0001"
	fuzzAccess  = "at-SECRET-fuzz-0001"
)

// errorSeeds are error bodies finAPI sends, or might.
var errorSeeds = []string{
	`{"error":"invalid_grant","error_description":"Invalid refresh token: ` + fuzzRefresh + `"}`,
	`{"error":"invalid_client","error_description":"Bad client credentials: ` + clientSecret + `"}`,
	`{"error":"invalid_token","error_description":"` + fuzzAccess + ` expired; ` + fuzzAccess + `"}`,
	`{"errors":[{"message":"User is locked","code":"USER_LOCKED","type":"BUSINESS"}],"date":"2030-01-01","requestId":"x"}`,
	`{"errors":[{"message":"token ` + fuzzRefresh + ` unknown","code":"ENTITY_NOT_FOUND"}]}`,
	`{"errors":[]}`, `{"errors":null}`, `{"errors":[null]}`, `{"errors":"x"}`, `{"error":7}`,
	`{"error":"invalid_grant","error_description":"\u0072t-SECRET-fuzz-0001"}`,
	``, `null`, `[]`, `<html>Bad Gateway</html>`, "\xff\xfe", `{"error_description":"` + strings.Repeat("x", 300) + fuzzRefresh + `"}`,
}

// FuzzFailure feeds arbitrary error bodies to finAPI's error decoder. It
// must never panic, never let a secret the request carried into the
// description (which becomes the link's last_error), and never take a
// status that means "try again" for a spent grant.
func FuzzFailure(f *testing.F) {
	for _, body := range errorSeeds {
		for _, status := range []int{400, 401, 403, 423, 429, 500, 200} {
			f.Add(status, body)
		}
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		e := failure(opRefresh, &reply{status: status, header: http.Header{}, body: []byte(body)},
			fuzzRefresh, fuzzAccess, clientSecret)
		if e == nil {
			t.Fatal("no error")
		}
		for _, s := range []string{fuzzRefresh, fuzzAccess, clientSecret} {
			if strings.Contains(e.Description, s) {
				t.Fatal("a secret of the request is in the error description")
			}
		}
		if (status == http.StatusLocked || status == http.StatusForbidden || e.Code == CodeUserLocked) && e.Class != providers.Permanent {
			t.Fatalf("status %d code %q is %v, want permanent", status, e.Code, e.Class)
		}
		retryable := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
		if retryable && e.Class == providers.InvalidGrant {
			t.Fatalf("InvalidGrant for status %d", status)
		}
		_ = e.Error()
	})
}

// replyTransport answers every request with one canned reply.
type replyTransport struct {
	status      int
	contentType string
	body        string
}

func (rt replyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: rt.status,
		Header:     http.Header{"Content-Type": {rt.contentType}},
		Body:       io.NopCloser(strings.NewReader(rt.body)),
		Request:    req,
	}, nil
}

// FuzzRefreshReply runs a whole refresh against arbitrary replies of the
// token endpoint: a token comes out only of a 2xx reply that names an
// access token and no error code, and a failure never carries a secret
// in its description.
func FuzzRefreshReply(f *testing.F) {
	const jsonCT = "application/json;charset=UTF-8"
	for _, body := range errorSeeds {
		f.Add(400, jsonCT, body)
		f.Add(200, jsonCT, body)
	}
	for _, seed := range []struct {
		status      int
		contentType string
		body        string
	}{
		{200, jsonCT, `{"access_token":"at-new","token_type":"bearer","refresh_token":"rt-new","expires_in":3599,"scope":"all"}`},
		{200, jsonCT, `{"access_token":"at-new","expires_in":"3599"}`},
		{200, jsonCT, `{"access_token":"","refresh_token":"rt-new"}`},
		{200, jsonCT, `{"access_token":null}`},
		{200, jsonCT, `{"access_token":"at-new","error":"invalid_grant"}`},
		{200, "application/x-www-form-urlencoded", `access_token=at-new&expires_in=60`},
		{200, "text/plain", `error=invalid_grant&access_token=at-new`},
		{200, "text/plain", `%zz`},
		{200, "", `{"access_token":"at-new"}`},
		{503, jsonCT, `{"access_token":"at-new"}`},
		{302, jsonCT, `{"access_token":"at-new"}`},
	} {
		f.Add(seed.status, seed.contentType, seed.body)
	}
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		// A real status, 200 to 599. The canned reply has no Location,
		// so the client hands a 3xx back as it is.
		if status < 0 {
			status = -(status + 1)
		}
		status = 200 + status%400
		p, err := NewProvider("https://finapi.invalid", clientID, clientSecret,
			&http.Client{Transport: replyTransport{status: status, contentType: contentType, body: body}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		prev := &providers.Token{AccessToken: fuzzAccess, RefreshToken: fuzzRefresh}
		tok, err := p.Refresh(context.Background(), prev)
		if err != nil {
			if tok != nil {
				t.Fatal("both a token and an error")
			}
			var pe *providers.Error
			if !errors.As(err, &pe) {
				t.Fatalf("want a *providers.Error, got %T", err)
			}
			for _, s := range []string{fuzzRefresh, fuzzAccess, clientSecret} {
				if strings.Contains(pe.Description, s) {
					t.Fatal("a secret of the request is in the error description")
				}
			}
			return
		}
		if tok == nil {
			t.Fatal("neither a token nor an error")
		}
		if status < 200 || status > 299 {
			t.Fatalf("a token out of a %d reply", status)
		}
		if tok.AccessToken == "" {
			t.Fatal("a token without an access token")
		}
		_, code, _, _ := generic.ParseTokenReply(contentType, []byte(body), time.Now())
		if code != "" {
			t.Fatal("a token out of a reply with an error code")
		}
		if tok.RefreshToken == "" {
			t.Fatal("the refresh token was lost")
		}
	})
}
