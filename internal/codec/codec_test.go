package codec_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/tokenwarden/tokenwarden/internal/codec"
)

// newKey returns a fresh base64 key.
func newKey(t *testing.T) string {
	t.Helper()
	key, err := codec.GenerateKey()
	require.NoError(t, err)
	return key
}

func keyring(t *testing.T, spec string) *codec.Keyring {
	t.Helper()
	k, err := codec.ParseKeyring(spec)
	require.NoError(t, err)
	return k
}

type grant struct {
	Subject string            `json:"subject"`
	Scopes  []string          `json:"scopes"`
	Extra   map[string]string `json:"extra,omitempty"`
}

const marker = "plaintext-marker-5f1c"

func TestDataConverterRoundTrip(t *testing.T) {
	dc := codec.DataConverter(keyring(t, "k1:"+newKey(t)))

	in := grant{Subject: marker, Scopes: []string{"openid", "offline_access"}, Extra: map[string]string{"aud": marker}}
	payloads, err := dc.ToPayloads(marker, in, nil, 42, []byte(marker))
	require.NoError(t, err)
	for i, p := range payloads.GetPayloads() {
		assert.Equal(t, codec.MetadataEncodingEncrypted, string(p.GetMetadata()[converter.MetadataEncoding]), "payload %d", i)
		assert.Equal(t, "k1", string(p.GetMetadata()[codec.MetadataEncryptionKeyID]), "payload %d", i)
		assert.NotContains(t, string(p.GetData()), marker, "payload %d leaks its plaintext", i)
		assert.Len(t, p.GetMetadata(), 2, "payload %d: the inner encoding must be sealed too", i)
	}

	var (
		s      string
		g      grant
		nilOut *grant
		n      int
		b      []byte
	)
	require.NoError(t, dc.FromPayloads(payloads, &s, &g, &nilOut, &n, &b))
	assert.Equal(t, marker, s)
	assert.Equal(t, in, g)
	assert.Nil(t, nilOut)
	assert.Equal(t, 42, n)
	assert.Equal(t, []byte(marker), b)

	// Single payloads too, and nil on its own.
	p, err := dc.ToPayload(nil)
	require.NoError(t, err)
	assert.Equal(t, codec.MetadataEncodingEncrypted, string(p.GetMetadata()[converter.MetadataEncoding]))
	var v *grant
	require.NoError(t, dc.FromPayload(p, &v))
	assert.Nil(t, v)
}

func TestEncryptionIsRandomized(t *testing.T) {
	dc := codec.DataConverter(keyring(t, "k1:"+newKey(t)))
	a, err := dc.ToPayload(marker)
	require.NoError(t, err)
	b, err := dc.ToPayload(marker)
	require.NoError(t, err)
	// A fresh nonce each time: equal inputs must not be recognizable.
	assert.NotEqual(t, a.GetData(), b.GetData())
}

func TestEncodeDoesNotMutateInput(t *testing.T) {
	c := codec.NewCodec(keyring(t, "k1:"+newKey(t)))
	in := plainPayload(marker)
	_, err := c.Encode([]*commonpb.Payload{in})
	require.NoError(t, err)
	assert.Equal(t, "json/plain", string(in.GetMetadata()[converter.MetadataEncoding]))
	assert.Equal(t, `"`+marker+`"`, string(in.GetData()))
}

func TestDecodeAfterRotation(t *testing.T) {
	k0, k1 := newKey(t), newKey(t)
	old := codec.DataConverter(keyring(t, "k0:"+k0))
	written, err := old.ToPayload(marker)
	require.NoError(t, err)

	// Rotation: k1 is prepended and becomes current; k0 stays to read.
	rotated := codec.DataConverter(keyring(t, "k1:"+k1+",k0:"+k0))
	var s string
	require.NoError(t, rotated.FromPayload(written, &s))
	assert.Equal(t, marker, s)

	fresh, err := rotated.ToPayload(marker)
	require.NoError(t, err)
	assert.Equal(t, "k1", string(fresh.GetMetadata()[codec.MetadataEncryptionKeyID]))
}

func TestDecodeUnknownKeyID(t *testing.T) {
	k0 := newKey(t)
	written, err := codec.NewCodec(keyring(t, "k0:"+k0)).Encode([]*commonpb.Payload{plainPayload(marker)})
	require.NoError(t, err)

	// k0 was dropped from the keyring.
	_, err = codec.NewCodec(keyring(t, "k1:"+newKey(t))).Decode(written)
	require.Error(t, err)
	assert.ErrorIs(t, err, codec.ErrUnknownKey)
	assert.Contains(t, err.Error(), `"k0"`)
	assert.NotContains(t, err.Error(), k0)
}

func TestDecodeRejectsTampering(t *testing.T) {
	key := newKey(t)
	c := codec.NewCodec(keyring(t, "k1:"+key))
	encoded, err := c.Encode([]*commonpb.Payload{plainPayload(marker)})
	require.NoError(t, err)
	data := encoded[0].GetData()

	cases := map[string][]byte{
		"flipped bit": func() []byte { d := bytes.Clone(data); d[len(d)/2] ^= 1; return d }(),
		"truncated":   data[:len(data)-1],
		"too short":   data[:5],
		"empty":       nil,
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			p := &commonpb.Payload{Metadata: encoded[0].GetMetadata(), Data: d}
			_, err := c.Decode([]*commonpb.Payload{p})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "message authentication failed")
			assert.NotContains(t, err.Error(), key)
		})
	}

	t.Run("same ID, other key", func(t *testing.T) {
		other := codec.NewCodec(keyring(t, "k1:"+newKey(t)))
		_, err := other.Decode(encoded)
		require.Error(t, err)
	})
	t.Run("no key ID", func(t *testing.T) {
		p := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(codec.MetadataEncodingEncrypted)}, Data: data}
		_, err := c.Decode([]*commonpb.Payload{p})
		require.Error(t, err)
		assert.Contains(t, err.Error(), codec.MetadataEncryptionKeyID)
	})
}

func TestDecodePassesUnencryptedPayloadsThrough(t *testing.T) {
	k := keyring(t, "k1:"+newKey(t))
	// Written before the codec was enabled.
	old, err := converter.GetDefaultDataConverter().ToPayloads(marker, grant{Subject: "s"}, nil)
	require.NoError(t, err)

	decoded, err := codec.NewCodec(k).Decode(old.GetPayloads())
	require.NoError(t, err)
	assert.Equal(t, old.GetPayloads(), decoded)

	var (
		s string
		g grant
		n *grant
	)
	require.NoError(t, codec.DataConverter(k).FromPayloads(old, &s, &g, &n))
	assert.Equal(t, marker, s)
	assert.Equal(t, "s", g.Subject)
}

// TestSamplesFormat pins the wire format to the one of samples-go
// encryption/: nonce || AES-256-GCM(proto(payload)), no associated data,
// so other codec servers holding the key can read our histories.
func TestSamplesFormat(t *testing.T) {
	key := newKey(t)
	in := plainPayload(marker)
	encoded, err := codec.NewCodec(keyring(t, "k1:"+key)).Encode([]*commonpb.Payload{in})
	require.NoError(t, err)

	raw, err := base64.StdEncoding.DecodeString(key)
	require.NoError(t, err)
	block, err := aes.NewCipher(raw)
	require.NoError(t, err)
	gcm, err := cipher.NewGCM(block)
	require.NoError(t, err)
	data := encoded[0].GetData()
	plain, err := gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], nil)
	require.NoError(t, err)
	var out commonpb.Payload
	require.NoError(t, proto.Unmarshal(plain, &out))
	assert.True(t, proto.Equal(in, &out))
}

func TestFailureConverterEncryptsMessages(t *testing.T) {
	fc := codec.FailureConverter(keyring(t, "k1:"+newKey(t)))
	appErr := temporal.NewApplicationError("refresh failed: "+marker, "RefreshError", grant{Subject: marker})

	failure := fc.ErrorToFailure(appErr)
	require.NotNil(t, failure)
	assert.Equal(t, "Encoded failure", failure.GetMessage())
	assert.Empty(t, failure.GetStackTrace())
	attrs := failure.GetEncodedAttributes()
	require.NotNil(t, attrs)
	assert.Equal(t, codec.MetadataEncodingEncrypted, string(attrs.GetMetadata()[converter.MetadataEncoding]))
	assert.NotContains(t, failure.String(), marker, "the failure leaks its message or details")
	// The error type is not encrypted: Temporal's retry policies match on it.
	assert.Equal(t, "RefreshError", failure.GetApplicationFailureInfo().GetType())

	back := fc.FailureToError(failure)
	var decoded *temporal.ApplicationError
	require.True(t, errors.As(back, &decoded), "got %T", back)
	assert.Equal(t, "refresh failed: "+marker, decoded.Message())
	var details grant
	require.NoError(t, decoded.Details(&details))
	assert.Equal(t, marker, details.Subject)
}

func TestParseKeyring(t *testing.T) {
	k0, k1 := newKey(t), newKey(t)
	k, err := codec.ParseKeyring(" k1:" + k1 + " , k0:" + k0 + ",")
	require.NoError(t, err)
	assert.Equal(t, "k1", k.CurrentKeyID())
	assert.Equal(t, []string{"k1", "k0"}, k.KeyIDs())

	raw, err := base64.StdEncoding.DecodeString(k0)
	require.NoError(t, err)
	for name, enc := range map[string]*base64.Encoding{"raw std": base64.RawStdEncoding, "url": base64.URLEncoding, "raw url": base64.RawURLEncoding} {
		_, err := codec.ParseKeyring("k:" + enc.EncodeToString(raw))
		assert.NoError(t, err, name)
	}

	short := base64.StdEncoding.EncodeToString(raw[:16])
	bad := map[string]string{
		"empty":         "",
		"only commas":   " , ,",
		"no colon":      "k1" + k1,
		"empty ID":      ":" + k1,
		"bad ID":        "k 1:" + k1,
		"empty key":     "k1:",
		"not base64":    "k1:" + strings.Repeat("!", 44),
		"AES-128 key":   "k1:" + short,
		"duplicate IDs": "k1:" + k1 + ",k1:" + k0,
	}
	for name, spec := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := codec.ParseKeyring(spec)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "codec: "), err.Error())
			for _, secret := range []string{k0, k1, short, strings.Repeat("!", 44)} {
				assert.NotContains(t, err.Error(), secret, "the error quotes a key")
			}
		})
	}
}

func TestKeyringNeverPrintsKeys(t *testing.T) {
	key := newKey(t)
	raw, err := base64.StdEncoding.DecodeString(key)
	require.NoError(t, err)
	k := keyring(t, "k1:"+key)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, v := range []any{k, *k} {
			out := fmt.Sprintf(format, v)
			assert.NotContains(t, out, key, format)
			assert.NotContains(t, out, string(raw), format)
			assert.NotContains(t, out, fmt.Sprintf("%x", raw), format)
			assert.Contains(t, out, "k1", format)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	k0, k1, k2 := newKey(t), newKey(t), newKey(t)
	read := func(fields map[string]string, err error) func(context.Context) (map[string]string, error) {
		return func(context.Context) (map[string]string, error) { return fields, err }
	}
	ctx := context.Background()

	k, err := codec.LoadKeyring(ctx, read(map[string]string{"keys": "k1:" + k1 + ",k0:" + k0}, nil))
	require.NoError(t, err)
	assert.Equal(t, []string{"k1", "k0"}, k.KeyIDs())

	k, err = codec.LoadKeyring(ctx, read(map[string]string{"current": "k1", "k2": k2, "k1": k1, "k0": k0}, nil))
	require.NoError(t, err)
	assert.Equal(t, "k1", k.CurrentKeyID())
	assert.Equal(t, []string{"k1", "k0", "k2"}, k.KeyIDs())

	vaultDown := errors.New("vault: connection refused")
	_, err = codec.LoadKeyring(ctx, read(nil, vaultDown))
	assert.ErrorIs(t, err, vaultDown)

	for name, fields := range map[string]map[string]string{
		"empty":           {},
		"no current":      {"k1": k1},
		"current missing": {"current": "k9", "k1": k1},
		"bad key":         {"current": "k1", "k1": "nope"},
		"bad spec":        {"keys": "k1"},
	} {
		_, err := codec.LoadKeyring(ctx, read(fields, nil))
		assert.Error(t, err, name)
	}
	_, err = codec.LoadKeyring(ctx, nil)
	assert.Error(t, err)
}

func TestZeroKeyringErrorsInsteadOfPanicking(t *testing.T) {
	for name, k := range map[string]*codec.Keyring{"nil": nil, "zero": {}} {
		c := codec.NewCodec(k)
		_, err := c.Encode([]*commonpb.Payload{plainPayload(marker)})
		assert.Error(t, err, name)
		encrypted := &commonpb.Payload{Metadata: map[string][]byte{
			converter.MetadataEncoding:    []byte(codec.MetadataEncodingEncrypted),
			codec.MetadataEncryptionKeyID: []byte("k1"),
		}}
		_, err = c.Decode([]*commonpb.Payload{encrypted})
		assert.Error(t, err, name)
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := newKey(t), newKey(t)
	assert.NotEqual(t, a, b)
	raw, err := base64.StdEncoding.DecodeString(a)
	require.NoError(t, err)
	assert.Len(t, raw, codec.KeySize)
}

func plainPayload(s string) *commonpb.Payload {
	return &commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")},
		Data:     []byte(`"` + s + `"`),
	}
}
