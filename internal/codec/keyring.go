// Package codec encrypts every payload and failure Tokenwarden hands to
// Temporal, and serves the codec endpoints the Temporal UI uses to show
// them decrypted.
//
// Workflows hold no secrets by design, so this is defence in depth: should
// a token or a user's data ever slip into a workflow input, result, signal,
// activity argument or error message, Temporal's history (and whoever can
// read its database or backups) sees ciphertext only.
//
// The payload format is the one of temporalio/samples-go encryption/ and of
// Temporal's cross-SDK encryption feature test: metadata encoding
// "binary/encrypted" plus "encryption-key-id", data = 12-byte nonce ||
// AES-256-GCM(proto-encoded original payload). Any codec server that knows
// the key can therefore read our histories, and we can read theirs.
package codec

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

// Fields of the keyring secret read by LoadKeyring.
const (
	// SecretFieldKeys holds a whole keyring spec, as ParseKeyring takes it.
	SecretFieldKeys = "keys"
	// SecretFieldCurrent names the current key when every key has a field
	// of its own (field name = key ID, value = base64 key).
	SecretFieldCurrent = "current"
)

// Keyring holds the keys payloads are encrypted with, by key ID. One is
// current and encrypts everything new; the others stay around only to
// decrypt histories written before a rotation. A Keyring is immutable and
// safe for concurrent use.
//
// It never prints its keys: String, GoString and Format show key IDs only,
// so a stray log line cannot leak them.
type Keyring struct {
	current string
	ids     []string // current first, then in configuration order
	aeads   map[string]cipher.AEAD
}

// ParseKeyring reads a keyring from a spec such as
//
//	k1:<base64 of 32 bytes>,k0:<base64 of 32 bytes>
//
// The first key is current. Key IDs are 1-64 characters of [A-Za-z0-9._-]
// (they are stored in every payload's metadata); keys are standard or URL
// base64, padded or not. Errors name key IDs and positions, never keys.
func ParseKeyring(spec string) (*Keyring, error) {
	var ids, keys []string
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			// Tolerate the trailing comma a config template leaves behind.
			continue
		}
		id, key, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("codec: keyring entry %d: want <key ID>:<base64 key>", i+1)
		}
		ids = append(ids, strings.TrimSpace(id))
		keys = append(keys, strings.TrimSpace(key))
	}
	return newKeyring(ids, keys)
}

// LoadKeyring builds a keyring from a secret read by read (typically a
// Vault KV read; this package does not know about Vault). The secret has
// either
//
//   - a field "keys" holding a spec as ParseKeyring takes it, or
//   - a field "current" naming the current key ID, and one field per key:
//     name = key ID, value = base64 key.
func LoadKeyring(ctx context.Context, read func(ctx context.Context) (map[string]string, error)) (*Keyring, error) {
	if read == nil {
		return nil, errors.New("codec: load keyring: no read function")
	}
	fields, err := read(ctx)
	if err != nil {
		return nil, fmt.Errorf("codec: read keyring: %w", err)
	}
	if len(fields) == 0 {
		return nil, errors.New("codec: keyring secret is empty")
	}
	if spec, ok := fields[SecretFieldKeys]; ok {
		return ParseKeyring(spec)
	}
	current := strings.TrimSpace(fields[SecretFieldCurrent])
	if current == "" {
		return nil, fmt.Errorf("codec: keyring secret has neither a %q nor a %q field", SecretFieldKeys, SecretFieldCurrent)
	}
	if _, ok := fields[current]; !ok {
		return nil, fmt.Errorf("codec: keyring secret: current key %q has no field", current)
	}
	// Current first, the others in a stable order (map order is random).
	ids := []string{current}
	for id := range fields {
		if id != current && id != SecretFieldCurrent {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids[1:])
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = strings.TrimSpace(fields[id])
	}
	return newKeyring(ids, keys)
}

// GenerateKey returns a fresh random key, base64-encoded, for the dev stack
// or for a rotation ("k2:" + key, prepended to the spec).
func GenerateKey() (string, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("codec: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

func newKeyring(ids, keys []string) (*Keyring, error) {
	if len(ids) == 0 {
		return nil, errors.New("codec: keyring has no keys")
	}
	k := &Keyring{current: ids[0], aeads: make(map[string]cipher.AEAD, len(ids))}
	for i, id := range ids {
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("codec: keyring key %d: %w", i+1, err)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("codec: keyring key ID %q appears twice", id)
		}
		raw, err := decodeKey(keys[i])
		if err != nil {
			return nil, fmt.Errorf("codec: keyring key %q: %w", id, err)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, fmt.Errorf("codec: keyring key %q: %w", id, err)
		}
		k.aeads[id] = aead
		k.ids = append(k.ids, id)
	}
	return k, nil
}

// newAEAD returns AES-256-GCM that draws a random 96-bit nonce for every
// Seal and prepends it to the ciphertext: the samples' layout, with nonce
// handling left to the standard library. Random nonces bound a key to about
// 2^32 payloads; rotate well before that.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("AES: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("GCM: %w", err)
	}
	return aead, nil
}

// decodeKey accepts the base64 flavours people paste. Its errors never
// quote the input.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty key")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		raw, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(raw) != KeySize {
			return nil, fmt.Errorf("key is %d bytes, want %d (AES-256)", len(raw), KeySize)
		}
		return raw, nil
	}
	return nil, errors.New("key is not valid base64")
}

func checkKeyID(id string) error {
	if id == "" {
		return errors.New("empty key ID")
	}
	if len(id) > 64 {
		return fmt.Errorf("key ID %.16q... is longer than 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key ID %q: only letters, digits, '.', '_' and '-' are allowed", id)
		}
	}
	return nil
}

// CurrentKeyID is the ID of the key new payloads are encrypted with.
func (k *Keyring) CurrentKeyID() string { return k.current }

// KeyIDs lists every key ID, current first.
func (k *Keyring) KeyIDs() []string { return slices.Clone(k.ids) }

// String shows the key IDs, never the keys. String, GoString and Format
// have value receivers so that printing a dereferenced Keyring is covered
// too.
func (k Keyring) String() string {
	return fmt.Sprintf("codec.Keyring{current: %s, keys: %s}", k.current, strings.Join(k.ids, ","))
}

// GoString keeps %#v from dumping the key schedules.
func (k Keyring) GoString() string { return k.String() }

// Format makes every verb (%v, %+v, %#v, %s, ...) print String.
func (k Keyring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

func (k *Keyring) aead(id string) (cipher.AEAD, bool) {
	a, ok := k.aeads[id]
	return a, ok
}
