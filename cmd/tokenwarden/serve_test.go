package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 12 point 2: the codec decoded for anyone on loopback who sent a
// Temporal UI Origin, also through a same-host reverse proxy.
func TestCodecAuthorize(t *testing.T) {
	const origin = "http://127.0.0.1:8233"
	keys := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer tw_good" }
	anyCase := func(r *http.Request) bool { return strings.EqualFold(r.Header.Get("Authorization"), "bearer tw_good") }
	req := func(remote string, hdr ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/codec/decode", nil)
		r.RemoteAddr = remote
		r.Header.Set("Origin", origin)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	production := &config{CodecOrigins: origin}
	dev := &config{CodecOrigins: origin, CodecKeylessLoopback: true}

	// The probe's reproduction: no key, loopback, the UI's Origin.
	assert.False(t, codecAuthorize(production, keys)(req("127.0.0.1:5555")), "keyless access must be off by default")
	assert.True(t, codecAuthorize(dev, keys)(req("127.0.0.1:5555")), "the dev stack turns it on")
	assert.True(t, codecAuthorize(dev, keys)(req("[::1]:5555")))
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host", "Via"} {
		assert.Falsef(t, codecAuthorize(dev, keys)(req("127.0.0.1:5555", h, "203.0.113.9")), "through a proxy (%s) is not loopback", h)
	}
	assert.False(t, codecAuthorize(dev, keys)(req("192.0.2.1:5555")), "not loopback")
	assert.False(t, codecAuthorize(dev, keys)(req("127.0.0.1:5555", "Origin", "http://evil.example")), "not the UI")

	// Keys: an API key anywhere, "bearer" in any case (the gateway's
	// CheckAPIKey parses it); a wrong key is never rescued by loopback.
	assert.True(t, codecAuthorize(production, keys)(req("192.0.2.1:5555", "Authorization", "Bearer tw_good")))
	assert.True(t, codecAuthorize(production, anyCase)(req("192.0.2.1:5555", "Authorization", "bearer tw_good")))
	assert.False(t, codecAuthorize(dev, keys)(req("127.0.0.1:5555", "Authorization", "Bearer tw_bad")))

	// A codec token replaces API keys, and "bearer" is any case.
	withToken := &config{CodecOrigins: origin, CodecToken: "codec-secret-token"}
	assert.True(t, codecAuthorize(withToken, keys)(req("192.0.2.1:5555", "Authorization", "bearer codec-secret-token")))
	assert.True(t, codecAuthorize(withToken, keys)(req("192.0.2.1:5555", "Authorization", "BEARER codec-secret-token")))
	assert.False(t, codecAuthorize(withToken, keys)(req("192.0.2.1:5555", "Authorization", "Bearer tw_good")), "API keys are refused once a codec token is set")
	assert.False(t, codecAuthorize(withToken, keys)(req("192.0.2.1:5555", "Authorization", "Bearer codec-secret-tokeX")))
}

// startLimited serves h like the gateway does, with short limits.
func startLimited(t *testing.T, h http.Handler, maxConns int) string {
	t.Helper()
	cfg := &config{ReadTimeout: 400 * time.Millisecond, WriteTimeout: 2 * time.Second, IdleTimeout: 400 * time.Millisecond,
		MaxConnections: maxConns}
	cfg.gatewayDefaults()
	cfg.ReadHeaderTimeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := newHTTPServer(cfg, h)
	go func() { _ = hs.Serve(limitListener(ln, cfg.MaxConnections)) }()
	t.Cleanup(func() { _ = hs.Close() })
	return ln.Addr().String()
}

// closedWithin reports whether the server closes conn (EOF or reset)
// within d, sending nothing more itself.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Issue 12 point 3: a body sent a byte at a time kept a request open past
// 120s; idle keep-alive connections stayed open past 60s.
func TestGatewayServerTimeouts(t *testing.T) {
	t.Parallel()
	addr := startLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), 100)

	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		require.NoError(t, err)
		done := make(chan bool, 1)
		go func() { done <- closedWithin(conn, 3*time.Second) }()
		// One byte every 100ms: 100s for the body.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case closed := <-done:
				assert.True(t, closed, "a trickled body kept the request open past the read timeout")
				return
			case <-tick.C:
				_, _ = conn.Write([]byte("x"))
			}
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
		assert.True(t, closedWithin(conn, 3*time.Second), "an idle keep-alive connection stayed open")
	})
}

// Issue 12 point 3: 500 idle connections each held a goroutine and a file
// descriptor; the gateway now serves at most MaxConnections at once.
func TestGatewayServerConnectionCap(t *testing.T) {
	t.Parallel()
	addr := startLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), 2)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		// Half a request: the connection is taken, not yet timed out.
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n"))
	}
	time.Sleep(50 * time.Millisecond)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	_, err := c.Get("http://" + addr + "/")
	require.Error(t, err, "a third connection was served beside two held ones")
	// Once the held ones time out, it is served.
	require.Eventually(t, func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 5*time.Second, 100*time.Millisecond)
}

func TestCheckGatewayWriteTimeout(t *testing.T) {
	cfg := &config{}
	cfg.gatewayDefaults()
	require.NoError(t, cfg.checkGateway())
	cfg.WriteTimeout = 20 * time.Second
	err := cfg.checkGateway()
	require.Error(t, err, "a write timeout below a forced refresh's 30s wait would cut legitimate answers")
	assert.Contains(t, err.Error(), "-write-timeout")
}
