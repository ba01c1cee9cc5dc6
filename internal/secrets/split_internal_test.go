package secrets

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/providers"
)

// jsonNames are the JSON names of t's fields.
func jsonNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// TestTokenFieldsAreSorted makes every Token field a decision: what the
// gateway may read (accessPart copies it) or what only the worker may.
// A new field fails here until it is put on one side.
func TestTokenFieldsAreSorted(t *testing.T) {
	gateway := map[string]bool{"access_token": true, "token_type": true, "expiry": true, "issued_at": true,
		"scopes": true, "extra": true}
	worker := map[string]bool{"refresh_token": true, "id_token": true, "refresh_expiry": true, "subject": true}
	full := providers.Token{}
	v := reflect.ValueOf(&full).Elem()
	for i, name := range jsonNames(v.Type()) {
		if !gateway[name] && !worker[name] {
			t.Errorf("Token field %q is neither the gateway's nor the worker's: add it to accessPart or to the worker's list here", name)
		}
		setNonZero(t, v.Field(i))
	}
	got := reflect.ValueOf(accessPart(full))
	for i, name := range jsonNames(got.Type()) {
		if gateway[name] == got.Field(i).IsZero() {
			t.Errorf("accessPart: field %q copied=%v, want %v", name, !got.Field(i).IsZero(), gateway[name])
		}
	}
}

// TestGrantFieldsAreSorted does the same for Grant: the credentials stay
// out of the request part the gateway reads; everything else the gateway
// wrote comes back.
func TestGrantFieldsAreSorted(t *testing.T) {
	credentials := map[string]bool{"code": true, "username": true, "password": true, "device_code": true}
	request := map[string]bool{"type": true, "code_verifier": true, "redirect_url": true, "device_interval": true,
		"scopes": true, "params": true, "nonce": true, "allow_subject_change": true}
	full := providers.Grant{}
	v := reflect.ValueOf(&full).Elem()
	for i, name := range jsonNames(v.Type()) {
		if !credentials[name] && !request[name] {
			t.Errorf("Grant field %q is neither a credential nor part of the request: decide in requestPart and here", name)
		}
		setNonZero(t, v.Field(i))
	}
	got := reflect.ValueOf(requestPart(full))
	for i, name := range jsonNames(got.Type()) {
		if credentials[name] != got.Field(i).IsZero() {
			t.Errorf("requestPart: field %q kept=%v, want %v", name, !got.Field(i).IsZero(), !credentials[name])
		}
	}
}

func setNonZero(t *testing.T, f reflect.Value) {
	t.Helper()
	switch f.Kind() {
	case reflect.String:
		f.SetString("x")
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int64:
		f.SetInt(1)
	case reflect.Slice:
		f.Set(reflect.MakeSlice(f.Type(), 1, 1))
	case reflect.Map:
		f.Set(reflect.MakeMap(f.Type()))
	case reflect.Struct: // time.Time
		f.Set(reflect.ValueOf(timeOne).Convert(f.Type()))
	default:
		t.Fatalf("no test value for a field of kind %s", f.Kind())
	}
}

var timeOne = time.Unix(1, 0)
