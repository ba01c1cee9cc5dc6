package providers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

func TestClassifyRetrieveErrorDropsBody(t *testing.T) {
	const secret = "rt-SECRET-in-body"
	re := &oauth2.RetrieveError{
		Response:  &http.Response{StatusCode: 400, Header: http.Header{}},
		Body:      []byte(`{"error":"invalid_grant","refresh_token":"` + secret + `"}`),
		ErrorCode: "invalid_grant", ErrorDescription: "Token is not active",
	}
	require.Contains(t, re.Error()+string(re.Body), secret, "precondition: x/oauth2 keeps the body")
	err := Classify("refresh", fmt.Errorf("wrapped: %w", re))
	var pe *Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, InvalidGrant, pe.Class)
	assert.Equal(t, "invalid_grant", pe.Code)
	assert.Equal(t, 400, pe.Status)
	assert.NotContains(t, err.Error(), secret)
	assert.False(t, errors.As(err, new(*oauth2.RetrieveError)), "the RetrieveError is not wrapped")

	// A bodyless non-JSON 500 from x/oauth2.
	re = &oauth2.RetrieveError{Response: &http.Response{StatusCode: 502, Status: "502 Bad Gateway"}, Body: []byte(secret)}
	err = Classify("exchange", re)
	assert.Equal(t, Transient, ClassOf(err))
	assert.NotContains(t, err.Error(), secret)
}

func TestClassifyOtherErrors(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "https://idp.example.com/token?x=y", Err: syscall.ECONNREFUSED}
	err := Classify("refresh", refused)
	assert.Equal(t, Transient, ClassOf(err))
	assert.True(t, IsConnectionError(err))
	assert.NotContains(t, err.Error(), "idp.example.com")

	var se *json.SyntaxError
	jsonErr := json.Unmarshal([]byte("{"), &struct{}{})
	require.ErrorAs(t, jsonErr, &se)
	err = Classify("refresh", jsonErr)
	require.ErrorIs(t, err, ErrMalformedReply)

	err = Classify("refresh", errors.New("oauth2: cannot parse json: invalid character 'x'"))
	require.ErrorIs(t, err, ErrMalformedReply)

	pe := &Error{Class: Permanent, Code: "x"}
	got := Classify("revoke", pe)
	assert.Equal(t, "revoke: permanent: x", got.Error(), "an *Error gets the op when it had none")
	assert.Nil(t, Classify("x", nil))
}

func TestResponseError(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   Class
	}{
		{400, "invalid_grant", InvalidGrant},
		{400, "expired_token", InvalidGrant},
		{400, "invalid_client", Permanent},
		{401, "", Permanent},
		{403, "", Permanent},
		{404, "", Permanent},
		{400, "mystery", Permanent},
		{408, "", Transient},
		{429, "invalid_grant", RateLimited},
		{500, "", Transient},
		{503, "temporarily_unavailable", Transient},
		{200, "temporarily_unavailable", Transient},
		{200, "access_denied", Permanent},
		{400, "authorization_pending", Transient},
		{400, "slow_down", RateLimited},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.code), func(t *testing.T) {
			assert.Equal(t, tt.want, ResponseError("op", tt.status, nil, tt.code, "").Class)
		})
	}
	long := ResponseError("op", 400, nil, "x\nforged", strings.Repeat("é", 300))
	assert.Equal(t, "x?forged", long.Code)
	assert.LessOrEqual(t, len(long.Description), 200+len("…"))
	assert.True(t, strings.HasSuffix(long.Description, "…"))
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"99999999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// TestUnanswered tells a request that never left (refused connection)
// from one the provider may have acted on without its reply arriving
// (connection cut after the request, reply later than the timeout).
func TestUnanswered(t *testing.T) {
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	defer cut.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()

	client := &http.Client{Timeout: 300 * time.Millisecond}
	for _, c := range []struct {
		name, url  string
		unanswered bool
	}{
		{"connection refused", goneURL, false},
		{"connection cut after the request", cut.URL, true},
		{"reply later than the timeout", slow.URL, true},
	} {
		req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader("grant_type=refresh_token"))
		_, _, err := Send(client, "refresh", req)
		require.Error(t, err, c.name)
		assert.Equal(t, c.unanswered, IsUnanswered(err), "%s: %v", c.name, err)
		assert.Equal(t, Transient, ClassOf(err), c.name)
	}
}
