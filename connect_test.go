package tokenwarden

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCreateConnectSession(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"cs_1","token":"cst_x","connect_url":"http://gw/connect?session=cst_x",
			"expires_at":"2026-01-01T00:15:00Z","user_id":"alice","providers":["luca"],"scopes":[],"link_id":"lnk_1"}`))
	})
	cs, err := g.client().CreateConnectSession(context.Background(), ConnectSessionRequest{
		UserID: "alice", Providers: []string{"luca"}, LinkID: "lnk_1", Scopes: []string{"api:read"},
		ReturnURL: "https://app.example/done", ExpiresIn: 10 * time.Minute,
	})
	require.NoError(t, err)
	assert.Equal(t, "http://gw/connect?session=cst_x", cs.ConnectURL)
	assert.Equal(t, "lnk_1", cs.LinkID)
	assert.Equal(t, time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC), cs.ExpiresAt)
	r, body := g.lastRequest()
	assert.Equal(t, "POST /v1/connect/sessions", r.Method+" "+r.URL.Path)
	assert.JSONEq(t, `{"user_id":"alice","providers":["luca"],"link_id":"lnk_1","scopes":["api:read"],
		"return_url":"https://app.example/done","expires_in":600}`, string(body))

	_, err = g.client().CreateConnectSession(context.Background(), ConnectSessionRequest{UserID: "bob"})
	require.NoError(t, err)
	_, body = g.lastRequest()
	assert.JSONEq(t, `{"user_id":"bob"}`, string(body), "zero values stay out: the gateway's defaults apply")
}

func TestReauthorize(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"lnk_1","status":"active","authorization_url":"https://provider.example/auth"}`))
	})
	res, err := g.client().Reauthorize(context.Background(), "lnk_1", ReauthorizeRequest{Scopes: []string{"write"}})
	require.NoError(t, err)
	assert.Equal(t, "https://provider.example/auth", res.AuthorizationURL)
	r, body := g.lastRequest()
	assert.Equal(t, "POST /v1/links/lnk_1/reauthorize", r.Method+" "+r.URL.Path)
	assert.JSONEq(t, `{"scopes":["write"]}`, string(body))
	_, err = g.client().Reauthorize(context.Background(), "", ReauthorizeRequest{})
	assert.Error(t, err)
}
