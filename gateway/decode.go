package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads the request body into v strictly: one JSON value, no
// unknown fields, field names exactly as documented (encoding/json alone
// would take "Provider" for "provider"), no key twice in an object (it
// would keep the last), valid UTF-8 only (it would store U+FFFD), within
// the size limit, sent as application/json. optional allows an empty
// body. Error messages name the offending field but never echo a value: a
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
	if c.ContentType() != "application/json" {
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"a request body must be sent with Content-Type: application/json")
	}
	if !utf8.Valid(raw) {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is not valid UTF-8")
	}
	if err := checkJSON(raw, reflect.TypeOf(v)); err != nil {
		return err
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

// maxJSONDepth bounds the nesting checkJSON follows; the request types are
// two levels deep.
const maxJSONDepth = 32

// checkJSON walks raw alongside the Go type it is about to be decoded
// into and refuses what encoding/json lets pass: a key repeated in one
// object, an object key that matches a struct field only when case is
// ignored, and a string escape that is not a whole UTF-16 character (a
// lone surrogate, which encoding/json turns into U+FFFD). Syntax errors
// are left to the decoder, which reports them with an offset.
func checkJSON(raw []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	err := walkJSON(dec, t, "", 0)
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return nil
}

func walkJSON(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxJSONDepth {
		return newError(http.StatusBadRequest, CodeInvalidJSON, "request body is nested too deeply")
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			var fields map[string]reflect.Type
			if t != nil && t.Kind() == reflect.Struct {
				fields = jsonFields(t)
			}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := kt.(string)
				name := path + key
				if seen[key] {
					return newError(http.StatusBadRequest, CodeInvalidJSON, "field "+quoteShort(name)+" appears twice")
				}
				seen[key] = true
				if badSurrogate(key) {
					return newError(http.StatusBadRequest, CodeInvalidJSON, "request body has an invalid UTF-16 escape")
				}
				var next reflect.Type
				switch {
				case fields != nil:
					ft, ok := fields[key]
					if !ok {
						return newError(http.StatusBadRequest, CodeUnknownField, "unknown field "+quoteShort(name))
					}
					next = ft
				case t != nil && t.Kind() == reflect.Map:
					next = t.Elem()
				}
				if err := walkJSON(dec, next, name+".", depth+1); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		case '[':
			var elem reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				elem = t.Elem()
			}
			for dec.More() {
				if err := walkJSON(dec, elem, path, depth+1); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		}
	case string:
		if badSurrogate(tok) {
			return newError(http.StatusBadRequest, CodeInvalidJSON, "request body has an invalid UTF-16 escape")
		}
	}
	return nil
}

// badSurrogate reports a U+FFFD in a decoded string. The raw body is
// valid UTF-8 by then, so it came from an escape: either \ufffd itself,
// rare enough in API input to refuse, or a lone surrogate.
func badSurrogate(s string) bool { return strings.ContainsRune(s, utf8.RuneError) }

// jsonFields maps the exact JSON names of t's exported fields to their
// types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if ft := f.Type; f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			// Promoted fields, as encoding/json reads them.
			maps.Copy(out, jsonFields(ft))
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
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
