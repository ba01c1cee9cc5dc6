// Package iprange knows the special-purpose address ranges of the IANA
// registries (IPv4 and IPv6 Special-Purpose Address Registries, RFC 6890
// and its updates): addresses that are not somebody's public server, and
// that an outbound request on a tenant's behalf (a webhook) must never
// reach: loopback, private networks, carrier-grade NAT, link-local (cloud
// metadata), benchmarking, documentation, multicast, reserved, and the
// IPv6 translation and tunnelling prefixes that lead to them.
package iprange

import "net/netip"

var special = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
		"192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		// IPv6
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
		"2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// SpecialPurpose reports whether a is in a special-purpose range (an
// IPv4-mapped IPv6 address is judged by its IPv4 address).
func SpecialPurpose(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range special {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
