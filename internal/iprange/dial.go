package iprange

import (
	"net"
	"net/netip"
	"syscall"
)

// DialControl is a net.Dialer Control that refuses to connect to a
// special-purpose address, answering refusal. It judges the address
// actually dialled, after DNS, so a name that resolves (or is rebound) to
// an internal address is refused as well. Clients that use it must not
// use an HTTP proxy, which would dial on their behalf past the check.
func DialControl(refusal error) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || SpecialPurpose(ip) {
			return refusal
		}
		return nil
	}
}
