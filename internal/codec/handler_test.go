package codec_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/internal/codec"
)

const (
	uiOrigin   = "http://127.0.0.1:8233"
	codecToken = "codec-token-for-tests"
)

// wirePayloads is the JSON the Temporal UI posts to and reads from a codec
// server: protojson of temporal.api.common.v1.Payloads, bytes in base64.
type wirePayloads struct {
	Payloads []wirePayload `json:"payloads"`
}

type wirePayload struct {
	Metadata map[string]string `json:"metadata"`
	Data     string            `json:"data"`
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return string(b)
}

func codecServer(t *testing.T, k *codec.Keyring) *httptest.Server {
	t.Helper()
	h := codec.Handler(k, codec.HandlerOptions{
		AllowedOrigins: []string{uiOrigin + "/"},
		Authorize: func(r *http.Request) bool {
			return r.Header.Get("Authorization") == "Bearer "+codecToken
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/codec/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, body any, auth bool) *http.Response {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", uiOrigin)
	req.Header.Set("X-Namespace", "default")
	if auth {
		req.Header.Set("Authorization", "Bearer "+codecToken)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readPayloads(t *testing.T, resp *http.Response) wirePayloads {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	var out wirePayloads
	require.NoError(t, json.Unmarshal(body, &out), "body: %s", body)
	return out
}

func TestHandlerEncodeDecodeRoundTrip(t *testing.T) {
	k := keyring(t, "k1:"+newKey(t))
	srv := codecServer(t, k)

	plain := wirePayloads{Payloads: []wirePayload{
		{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(`{"subject":"` + marker + `"}`)},
		{Metadata: map[string]string{"encoding": b64("binary/null")}},
	}}
	resp := post(t, srv.URL+"/codec/encode", plain, true)
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	encoded := readPayloads(t, resp)
	require.Len(t, encoded.Payloads, 2)
	for _, p := range encoded.Payloads {
		assert.Equal(t, codec.MetadataEncodingEncrypted, unb64(t, p.Metadata["encoding"]))
		assert.Equal(t, "k1", unb64(t, p.Metadata["encryption-key-id"]))
		assert.NotContains(t, unb64(t, p.Data), marker)
	}

	decoded := readPayloads(t, post(t, srv.URL+"/codec/decode", encoded, true))
	require.Len(t, decoded.Payloads, 2)
	assert.Equal(t, "json/plain", unb64(t, decoded.Payloads[0].Metadata["encoding"]))
	assert.Equal(t, `{"subject":"`+marker+`"}`, unb64(t, decoded.Payloads[0].Data))
	assert.Equal(t, "binary/null", unb64(t, decoded.Payloads[1].Metadata["encoding"]))
	assert.Empty(t, decoded.Payloads[1].Data)

	// What the workers wrote is what the UI decodes.
	p, err := codec.DataConverter(k).ToPayload(marker)
	require.NoError(t, err)
	fromWorker := wirePayloads{Payloads: []wirePayload{{
		Metadata: map[string]string{
			"encoding":          base64.StdEncoding.EncodeToString(p.GetMetadata()["encoding"]),
			"encryption-key-id": base64.StdEncoding.EncodeToString(p.GetMetadata()["encryption-key-id"]),
		},
		Data: base64.StdEncoding.EncodeToString(p.GetData()),
	}}}
	decoded = readPayloads(t, post(t, srv.URL+"/codec/decode", fromWorker, true))
	assert.Equal(t, `"`+marker+`"`, unb64(t, decoded.Payloads[0].Data))
}

func TestHandlerDecodeErrors(t *testing.T) {
	key := newKey(t)
	srv := codecServer(t, keyring(t, "k1:"+key))
	unknown := wirePayloads{Payloads: []wirePayload{{
		Metadata: map[string]string{"encoding": b64(codec.MetadataEncodingEncrypted), "encryption-key-id": b64("k0")},
		Data:     b64(strings.Repeat("x", 40)),
	}}}
	resp := post(t, srv.URL+"/codec/decode", unknown, true)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, string(body), "unknown encryption key ID")
	assert.NotContains(t, string(body), key)

	resp = post(t, srv.URL+"/codec/decode", "not payloads", true)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestHandlerPreflight(t *testing.T) {
	srv := codecServer(t, keyring(t, "k1:"+newKey(t)))

	preflight := func(origin string) *http.Response {
		req, err := http.NewRequest(http.MethodOptions, srv.URL+"/codec/decode", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,authorization,x-namespace")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}

	// No credentials: browsers never send them on a preflight.
	resp := preflight(uiOrigin)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, "POST, OPTIONS", resp.Header.Get("Access-Control-Allow-Methods"))
	assert.Equal(t, "Content-Type, Authorization, X-Namespace", resp.Header.Get("Access-Control-Allow-Headers"))
	assert.Contains(t, resp.Header.Values("Vary"), "Origin")

	resp = preflight("https://evil.example")
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
}

func TestHandlerRequiresAuthorization(t *testing.T) {
	srv := codecServer(t, keyring(t, "k1:"+newKey(t)))
	body := wirePayloads{Payloads: []wirePayload{{Metadata: map[string]string{"encoding": b64("json/plain")}, Data: b64(`"x"`)}}}

	for _, path := range []string{"/codec/encode", "/codec/decode"} {
		resp := post(t, srv.URL+path, body, false)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		// CORS headers on errors too, or the UI cannot tell what went wrong.
		assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
		assert.Contains(t, resp.Header.Get("Content-Type"), "application/json")
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		assert.Equal(t, "unauthorized", e.Error.Code)
		assert.NotEmpty(t, e.Error.Message)
	}

	// Without an Authorize function nothing gets through.
	h := codec.Handler(keyring(t, "k1:"+newKey(t)), codec.HandlerOptions{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/codec/encode", strings.NewReader(`{"payloads":[]}`)))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
}

func TestHandlerRouting(t *testing.T) {
	h := codec.Handler(keyring(t, "k1:"+newKey(t)), codec.HandlerOptions{
		Prefix:       "/temporal/codec/",
		Authorize:    func(*http.Request) bool { return true },
		MaxBodyBytes: 64,
	})
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	assert.Equal(t, http.StatusOK, serve(http.MethodPost, "/temporal/codec/encode", `{"payloads":[]}`).Code)
	assert.Equal(t, http.StatusNotFound, serve(http.MethodPost, "/codec/encode", `{}`).Code)
	assert.Equal(t, http.StatusNotFound, serve(http.MethodPost, "/temporal/codec/x/encode", `{}`).Code)
	rec := serve(http.MethodGet, "/temporal/codec/decode", "")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "POST, OPTIONS", rec.Header().Get("Allow"))
	big := `{"payloads":[{"data":"` + strings.Repeat("A", 100) + `"}]}`
	rec = serve(http.MethodPost, "/temporal/codec/encode", big)
	assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	assert.Contains(t, rec.Body.String(), `"code":"body_too_large"`)
}

// Issue 12 point 14: every error of the codec is JSON in the /v1 format
// (code, message, request_id), never Go's error text.
func TestHandlerErrorsAreJSON(t *testing.T) {
	h := codec.Handler(keyring(t, "k1:"+newKey(t)), codec.HandlerOptions{
		Authorize: func(r *http.Request) bool { return r.Header.Get("Authorization") != "" },
	})
	for _, tc := range []struct {
		name, body, auth, code string
		status                 int
	}{
		{"not payloads", `{"payloads": 3}`, "x", "invalid_json", http.StatusBadRequest},
		{"not JSON", `{"payl`, "x", "invalid_json", http.StatusBadRequest},
		{"bad base64", `{"payloads":[{"metadata":{"encoding":"!!"}}]}`, "x", "invalid_json", http.StatusBadRequest},
		{"no credentials", `{"payloads":[]}`, "", "unauthorized", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			rec.Header().Set("X-Request-ID", "req-1")
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Contains(t, rec.Header().Get("Content-Type"), "application/json")
			var e struct {
				Error struct{ Code, Message, RequestID string } `json:"error"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), "body: %s", rec.Body)
			assert.Equal(t, tc.code, e.Error.Code)
			assert.NotEmpty(t, e.Error.Message)
			assert.NotContains(t, e.Error.Message, "proto")
			assert.Equal(t, "req-1", rec.Result().Header.Get("X-Request-ID"))
		})
	}
}
