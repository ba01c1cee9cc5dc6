package sim

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

const ann = `{"username":"ann","email":"ann@example.com","external_id":"e-ann"}`
const otherAnn = `{"username":"ann","email":"other@example.com","external_id":"e-other"}`

// Shapes: snake_case, nested, unknown; SetShape switches later replies.
func TestShapes(t *testing.T) {
	s := New(Options{Shape: ShapeSnake})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, m := call(t, srv, PathCreate, s.Institution(), ann)
	assert.Contains(t, m, "access_token")
	assert.Contains(t, m, "refresh_token")
	assert.Contains(t, m, "user")
	s.SetShape(ShapeNested)
	_, m = call(t, srv, PathRetrieve, s.Institution(), ann)
	assert.Contains(t, m["data"], "accessToken")
	s.SetShape(ShapeUnknown)
	_, m = call(t, srv, PathRetrieve, s.Institution(), ann)
	assert.Contains(t, m["jwt"], "a")
	assert.NotContains(t, m, "accessToken")
}

// A taken username: 400 or 409; retrieve strict (all fields) or by
// username alone.
func TestCollisionModes(t *testing.T) {
	strict := New(Options{})
	srv := httptest.NewServer(strict)
	defer srv.Close()
	call(t, srv, PathCreate, strict.Institution(), ann)
	code, _ := call(t, srv, PathCreate, strict.Institution(), otherAnn)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = call(t, srv, PathRetrieve, strict.Institution(), otherAnn)
	assert.Equal(t, http.StatusNotFound, code)

	lenient := New(Options{Retrieve: RetrieveUsername, ConflictStatus: http.StatusConflict})
	srv2 := httptest.NewServer(lenient)
	defer srv2.Close()
	call(t, srv2, PathCreate, lenient.Institution(), ann)
	code, _ = call(t, srv2, PathCreate, lenient.Institution(), otherAnn)
	assert.Equal(t, http.StatusConflict, code)
	code, m := call(t, srv2, PathRetrieve, lenient.Institution(), otherAnn)
	assert.Equal(t, http.StatusOK, code, "the lenient service answers for the first ann")
	assert.Equal(t, "ann@example.com", m["user"].(map[string]any)["email"])
}
