package e2e

import (
	"encoding/json"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// haystack renders everything a reader of a history event could see: its
// protojson form (failure messages, names, IDs) and the decoded contents
// of every payload in it, wherever the payload sits (workflow and
// activity inputs and results, update and signal arguments, search
// attributes, memo, headers, failure details). Payload data is base64 in
// protojson, so scanning protojson alone never sees a secret in a payload.
// codec, when not nil, decodes payloads first (an encrypting codec would
// otherwise hide a leak from the scan, not from a key holder).
func haystack(ev proto.Message, codec converter.PayloadCodec) (string, error) {
	var sb strings.Builder
	b, err := protojson.Marshal(ev)
	if err != nil {
		return "", err
	}
	sb.Write(b)
	var perr error
	eachPayload(ev.ProtoReflect(), func(p *commonpb.Payload) {
		if codec != nil {
			dec, err := codec.Decode([]*commonpb.Payload{p})
			if err != nil {
				perr = fmt.Errorf("decode payload: %w", err)
				return
			}
			p = dec[0]
		}
		sb.WriteByte('\n')
		sb.Write(p.GetData())
		// JSON escapes some characters (<, >, &, non-ASCII): add every
		// string as it decodes.
		var v any
		if json.Unmarshal(p.GetData(), &v) == nil {
			eachString(v, func(s string) {
				sb.WriteByte('\n')
				sb.WriteString(s)
			})
		}
	})
	return sb.String(), perr
}

// eachPayload calls visit for every Payload in m, at any depth.
func eachPayload(m protoreflect.Message, visit func(*commonpb.Payload)) {
	if p, ok := m.Interface().(*commonpb.Payload); ok {
		visit(p)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				eachPayload(l.Get(i).Message(), visit)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				eachPayload(mv.Message(), visit)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			eachPayload(v.Message(), visit)
		}
		return true
	})
}

// eachString calls visit for every string in a decoded JSON value, keys
// included.
func eachString(v any, visit func(string)) {
	switch x := v.(type) {
	case string:
		visit(x)
	case []any:
		for _, e := range x {
			eachString(e, visit)
		}
	case map[string]any:
		for k, e := range x {
			visit(k)
			eachString(e, visit)
		}
	}
}
