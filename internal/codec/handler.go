package codec

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultPrefix is where Handler serves the codec endpoints unless told
// otherwise: the Temporal UI's "codec endpoint" is then
// https://<gateway>/codec.
const DefaultPrefix = "/codec"

// DefaultMaxBodyBytes bounds a request body. The UI sends the payloads of
// one page of history at a time; Temporal's own blob limit is 2 MiB per
// payload. It is the codec's own limit, far above the REST API's.
const DefaultMaxBodyBytes = 8 << 20

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// Prefix is the path the endpoints hang off: <Prefix>/encode and
	// <Prefix>/decode. Default DefaultPrefix.
	Prefix string
	// AllowedOrigins are the exact origins (scheme://host[:port]) of the
	// Temporal UI allowed to call from a browser, e.g.
	// "http://127.0.0.1:8233". No wildcard: a codec server decrypts, so
	// the set of pages that may drive it is spelled out.
	AllowedOrigins []string
	// Authorize decides whether a request may encode or decode; the
	// gateway checks an API key or a dedicated codec token. Required: with
	// no Authorize every request is refused, so a forgotten option fails
	// closed. CORS preflights never reach it (browsers send them without
	// credentials). It runs before the body is read.
	Authorize func(r *http.Request) bool
	// MaxBodyBytes bounds a request body. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Handler serves the Temporal UI's remote codec endpoints, POST
// <prefix>/encode and POST <prefix>/decode, with the keyring's codec. The
// body and answer are the SDK's JSON form of Payloads:
//
//	{"payloads":[{"metadata":{"encoding":"<base64>"},"data":"<base64>"}]}
//
// Mount it on the prefix itself, e.g. mux.Handle("/codec/", h) or, in Gin,
// r.Any("/codec/*path", gin.WrapH(h)); it matches full paths, so do not
// strip the prefix before it.
func Handler(k *Keyring, opts HandlerOptions) http.Handler {
	prefix := DefaultPrefix
	if opts.Prefix != "" {
		prefix = "/" + strings.Trim(opts.Prefix, "/")
		if prefix == "/" {
			prefix = ""
		}
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	origins := make([]string, 0, len(opts.AllowedOrigins))
	for _, o := range opts.AllowedOrigins {
		if o = normalizeOrigin(o); o != "" {
			origins = append(origins, o)
		}
	}
	return &handler{
		encodePath: prefix + "/encode",
		decodePath: prefix + "/decode",
		origins:    origins,
		authorize:  opts.Authorize,
		maxBody:    opts.MaxBodyBytes,
		codec:      NewCodec(k),
	}
}

type handler struct {
	encodePath, decodePath string
	origins                []string
	authorize              func(*http.Request) bool
	maxBody                int64
	codec                  converter.PayloadCodec
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// CORS headers go on every answer to an allowed origin, errors
	// included, so the UI can show why a call failed.
	allowed := h.cors(w, r)
	if r.Method == http.MethodOptions {
		if allowed {
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Namespace")
			// The UI decodes on every page: spare it a preflight each time.
			w.Header().Set("Access-Control-Max-Age", "600")
		}
		// A disallowed origin gets no CORS headers, so the browser stops.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h.authorize == nil || !h.authorize(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokenwarden-codec"`)
		// The body is never read; the connection is not kept for it.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid credentials for the codec endpoint")
		return
	}
	if r.URL.Path != h.encodePath && r.URL.Path != h.decodePath {
		writeError(w, http.StatusNotFound, "not_found", "no such codec endpoint; use "+h.encodePath+" or "+h.decodePath)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the codec endpoints take POST")
		return
	}
	tooLarge := "request body exceeds " + strconv.FormatInt(h.maxBody, 10) + " bytes"
	if r.ContentLength > h.maxBody {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", tooLarge)
		return
	}
	if r.Body == nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body is empty; send {\"payloads\": [...]}")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", tooLarge)
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_json", "could not read the request body")
		return
	}
	var in commonpb.Payloads
	if err := protojson.Unmarshal(raw, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body is not Temporal payloads in JSON: {\"payloads\": [...]}")
		return
	}
	var out []*commonpb.Payload
	if r.URL.Path == h.encodePath {
		out, err = h.codec.Encode(in.Payloads)
	} else {
		out, err = h.codec.Decode(in.Payloads)
	}
	if err != nil {
		// The codec's errors name key IDs and formats, never key
		// material or payload data.
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: out})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "could not encode the answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// cors sets the response headers for an allowed Origin and reports whether
// the origin is allowed.
func (h *handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	// Caches must not hand one origin's answer to another.
	w.Header().Add("Vary", "Origin")
	if origin == "" || !slices.Contains(h.origins, normalizeOrigin(origin)) {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Allow-Credentials", "true")
	return true
}

// normalizeOrigin lets "http://Host:8233/" in the config match the
// browser's "http://host:8233".
func normalizeOrigin(o string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
}

// writeError answers in the error format of the gateway's /v1 API,
// request_id included (the gateway sets X-Request-ID before the codec
// runs).
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]string{"code": code, "message": message, "request_id": w.Header().Get("X-Request-ID")},
	})
}
