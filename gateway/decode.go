package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads the request body into v strictly: one JSON value, no
// unknown fields, within the size limit. optional allows an empty body.
// Error messages name the offending field but never echo a value: a
// misplaced password must not come back in an error.
func (s *Server) decodeJSON(c *gin.Context, v any, optional bool) error {
	if c.Request.Body == nil {
		if optional {
			return nil
		}
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is empty; send a JSON object")
	}
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errBodyTooLarge(s.cfg.MaxBodyBytes)
		}
		return newError(http.StatusBadRequest, CodeInvalidJSON, "could not read the request body")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is empty; send a JSON object")
	}
	if ct := c.ContentType(); ct != "" && ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) *apiError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return newError(http.StatusBadRequest, CodeInvalidJSON,
			fmt.Sprintf("malformed JSON at byte %d", syntax.Offset))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return newError(http.StatusBadRequest, CodeInvalidJSON, "request body must be a JSON object")
		}
		return newError(http.StatusBadRequest, CodeInvalidJSON,
			fmt.Sprintf("field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String())))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body ends in the middle of the JSON")
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if len(name) > 66 {
			name = strings.ToValidUTF8(name[:64], "") + `..."`
		}
		return newError(http.StatusBadRequest, CodeUnknownField, "unknown field "+name)
	}
	return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is not valid JSON for this endpoint")
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a " + k
}
