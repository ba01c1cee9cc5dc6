package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLinksEvents(t *testing.T) {
	g := newFakeGateway(t, map[string]http.HandlerFunc{"GET /v1/links/lnk_1/events": answer(200, `{"events":[
		{"id":"e1","type":"enrolled","to_status":"active","detail":{},"occurred_at":"2030-01-01T00:00:00Z"},
		{"id":"e2","type":"revoked","from_status":"active","to_status":"revoked","detail":{"message":"user left"},"occurred_at":"2030-01-02T00:00:00Z"}
	],"next_cursor":"c2"}`)})
	out, errOut, err := runCLI(t, "events", "lnk_1", "--limit", "2", "--cursor", "c1")
	require.NoError(t, err)
	req, _ := g.last(t)
	assert.Equal(t, "2", req.URL.Query().Get("limit"))
	assert.Equal(t, "c1", req.URL.Query().Get("cursor"))
	assert.True(t, hasRow(out, "OCCURRED", "TYPE", "FROM", "TO", "DETAIL"), out)
	assert.True(t, hasRow(out, "2030-01-01T00:00:00Z", "enrolled", "-", "active"), out)
	assert.True(t, hasRow(out, "2030-01-02T00:00:00Z", "revoked", "active", "revoked", "user left"), out)
	assert.Contains(t, errOut, "tokenwarden links events lnk_1 --cursor c2")

	out, _, err = runCLI(t, "events", "lnk_1", "--json")
	require.NoError(t, err)
	assert.Contains(t, out, `"next_cursor": "c2"`)

	_, _, err = runCLI(t, "events", "lnk_missing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no such link")

	_, _, err = runCLI(t, "events")
	require.Error(t, err, "a link id is required")
}
