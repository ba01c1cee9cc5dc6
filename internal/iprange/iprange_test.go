package iprange

import (
	"net/netip"
	"testing"
)

func TestSpecialPurpose(t *testing.T) {
	for _, c := range []struct {
		addr    string
		special bool
	}{
		{"169.254.169.254", true}, // cloud metadata
		{"10.0.0.1", true},
		{"100.64.0.1", true}, // carrier-grade NAT, a metadata range in some clouds
		{"192.0.0.170", true},
		{"198.18.0.1", true},
		{"240.0.0.1", true},
		{"127.0.0.1", true},
		{"::ffff:10.0.0.1", true}, // IPv4-mapped
		{"64:ff9b::a00:1", true},  // NAT64 of 10.0.0.1
		{"2002:a00:1::1", true},   // 6to4 of 10.0.0.1
		{"fd00::1", true},
		{"fe80::1", true},
		{"8.8.8.8", false},
		{"93.184.215.14", false},
		{"2606:4700:4700::1111", false},
	} {
		if got := SpecialPurpose(netip.MustParseAddr(c.addr)); got != c.special {
			t.Errorf("SpecialPurpose(%s) = %v, want %v", c.addr, got, c.special)
		}
	}
}
