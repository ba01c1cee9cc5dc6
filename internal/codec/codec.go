package codec

import (
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// Payload metadata written by the codec.
const (
	// MetadataEncodingEncrypted is the "encoding" of an encrypted payload.
	MetadataEncodingEncrypted = "binary/encrypted"
	// MetadataEncryptionKeyID names the key a payload was encrypted with,
	// so decoding picks the right key after a rotation.
	MetadataEncryptionKeyID = "encryption-key-id"
)

// ErrUnknownKey is returned when a payload names a key the keyring does
// not have: it was encrypted with a key that has since been dropped, or by
// another deployment.
var ErrUnknownKey = errors.New("unknown encryption key ID")

// payloadCodec encrypts with the keyring's current key and decrypts with
// whichever key a payload names.
type payloadCodec struct {
	keys *Keyring
}

// NewCodec returns a PayloadCodec that encrypts every payload with AES-GCM
// under the keyring's current key. Decode leaves payloads that are not
// encrypted as they are, so histories written before the codec was enabled
// stay readable.
func NewCodec(k *Keyring) converter.PayloadCodec {
	return &payloadCodec{keys: k}
}

// Encode implements converter.PayloadCodec. It returns new payloads and
// leaves its input alone.
func (c *payloadCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.keys == nil {
		return nil, errors.New("codec: encode: no keyring")
	}
	id := c.keys.CurrentKeyID()
	aead, ok := c.keys.aead(id)
	if !ok {
		// A zero Keyring, not one from ParseKeyring or LoadKeyring.
		return nil, errors.New("codec: encode: keyring has no current key")
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		// The whole payload, metadata included, is sealed: the original
		// encoding ("json/plain", a proto message name...) is nobody's
		// business either.
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: encode payload %d: marshal: %w", i, err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(MetadataEncodingEncrypted),
				MetadataEncryptionKeyID:    []byte(id),
			},
			Data: aead.Seal(nil, nil, plain, nil),
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec.
func (c *payloadCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.keys == nil {
		return nil, errors.New("codec: decode: no keyring")
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != MetadataEncodingEncrypted {
			out[i] = p
			continue
		}
		id, ok := p.GetMetadata()[MetadataEncryptionKeyID]
		if !ok || len(id) == 0 {
			return nil, fmt.Errorf("codec: decode payload %d: encrypted payload has no %s", i, MetadataEncryptionKeyID)
		}
		aead, ok := c.keys.aead(string(id))
		if !ok {
			return nil, fmt.Errorf("codec: decode payload %d: %w %q (keyring has %v)", i, ErrUnknownKey, id, c.keys.ids)
		}
		// GCM authenticates: a flipped bit, a truncated payload or the
		// wrong key all end here, never in garbage handed to the converter.
		plain, err := aead.Open(nil, nil, p.GetData(), nil)
		if err != nil {
			return nil, fmt.Errorf("codec: decode payload %d with key %q: %w (tampered, truncated or encrypted with another key of that ID)", i, id, err)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(plain, &orig); err != nil {
			return nil, fmt.Errorf("codec: decode payload %d with key %q: unmarshal: %w", i, id, err)
		}
		out[i] = &orig
	}
	return out, nil
}

// DataConverter returns the SDK's default data converter with every
// payload encrypted by the keyring. Pass it as client.Options.DataConverter
// in every client and worker of a namespace, together with
// FailureConverter.
func DataConverter(k *Keyring) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), NewCodec(k))
}

// FailureConverter returns a failure converter that moves error messages
// and stack traces into an encrypted payload (the failure's message reads
// "Encoded failure" in the history). Error text is where secrets leak most
// easily: an OAuth server's error body, a wrapped URL with a code in it.
// Pass it as client.Options.FailureConverter next to DataConverter.
func FailureConverter(k *Keyring) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          DataConverter(k),
		EncodeCommonAttributes: true,
	})
}
