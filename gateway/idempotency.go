package gateway

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
)

// An Idempotency-Key names one request: a replay with another body is a
// client bug, answered 422 rather than silently given the first link.
// The comparison is on a hash of the whole request, credentials included.
// A plain digest of a password would be a guessing target for anyone
// reading the links table, so the hash is salted and iterated (PBKDF2),
// and stored as salt || key.
const (
	requestHashSaltLen = 16
	requestHashKeyLen  = 32
	// requestHashIter costs a few milliseconds per create with a key.
	requestHashIter = 10000
)

// canonicalRequest is createLinkRequest with empty and absent made one.
// encoding/json writes map keys sorted, so equal requests marshal alike.
type canonicalRequest struct {
	Provider    string            `json:"provider"`
	UserID      string            `json:"user_id"`
	Grant       string            `json:"grant"`
	Scopes      []string          `json:"scopes"`
	Params      map[string]string `json:"params"`
	Credentials credentials       `json:"credentials"`
	ReturnURL   string            `json:"return_url"`
}

// hashRequest hashes req with salt (nil: a fresh one) and returns
// salt || key.
func hashRequest(salt []byte, req *createLinkRequest) ([]byte, error) {
	if salt == nil {
		salt = make([]byte, requestHashSaltLen)
		_, _ = rand.Read(salt)
	}
	cr := canonicalRequest{Provider: req.Provider, UserID: req.UserID, Grant: req.Grant,
		Scopes: req.Scopes, Params: req.Params, ReturnURL: req.ReturnURL}
	if cr.Scopes == nil {
		cr.Scopes = []string{}
	}
	if cr.Params == nil {
		cr.Params = map[string]string{}
	}
	if req.Credentials != nil {
		cr.Credentials = *req.Credentials
	}
	b, err := json.Marshal(cr)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, string(b), salt, requestHashIter, requestHashKeyLen)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	return append(append([]byte{}, salt...), key...), nil
}

// sameRequest reports whether req is the request stored hashed.
func sameRequest(stored []byte, req *createLinkRequest) (bool, error) {
	if len(stored) != requestHashSaltLen+requestHashKeyLen {
		return false, fmt.Errorf("stored request hash has %d bytes", len(stored))
	}
	got, err := hashRequest(stored[:requestHashSaltLen], req)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, stored) == 1, nil
}
