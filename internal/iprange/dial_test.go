package iprange

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDialControl(t *testing.T) {
	refused := errors.New("refused")
	control := DialControl(refused)
	for _, c := range []struct {
		address string
		want    error
	}{
		{"127.0.0.1:443", refused},
		{"[::1]:443", refused},
		{"169.254.169.254:80", refused},
		{"[::ffff:10.0.0.1]:443", refused},
		{"8.8.8.8:443", nil},
		{"[2606:4700:4700::1111]:443", nil},
		{"not-an-address:443", refused}, // dialled addresses are always IPs; anything else is refused
	} {
		if got := control("tcp", c.address, nil); !errors.Is(got, c.want) {
			t.Errorf("DialControl(%s) = %v, want %v", c.address, got, c.want)
		}
	}
	if control("tcp", "no-port", nil) == nil {
		t.Error("an address without a port passed")
	}
}

// TestDialControlRefusesLoopbackServer: a dialer with the control cannot
// reach a server on loopback, whatever name or form the URL uses.
func TestDialControlRefusesLoopbackServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	refused := errors.New("refused")
	d := &net.Dialer{Control: DialControl(refused)}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
		if !errors.Is(err, refused) {
			t.Errorf("dial %s: %v, want refused", host, err)
		}
	}
}
