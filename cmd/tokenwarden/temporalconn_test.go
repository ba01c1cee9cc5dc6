package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// temporal.test, and a client certificate, as PEM files in a folder.
type testPKI struct {
	dir                                      string
	caFile, serverCert, serverKey, cert, key string
	otherCAFile                              string
	ca                                       *x509.Certificate
	caKey                                    *ecdsa.PrivateKey
	serverPair                               tls.Certificate
	caPool                                   *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.ca, p.caKey = selfSigned(t, "tokenwarden test CA")
	p.caFile = p.writePEM(t, "ca.crt", "CERTIFICATE", p.ca.Raw)
	other, _ := selfSigned(t, "another CA")
	p.otherCAFile = p.writePEM(t, "other-ca.crt", "CERTIFICATE", other.Raw)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.ca)
	p.serverCert, p.serverKey = p.issue(t, "server", &x509.Certificate{
		Subject: pkix.Name{CommonName: "temporal.test"}, DNSNames: []string{"temporal.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	p.cert, p.key = p.issue(t, "client", &x509.Certificate{
		Subject: pkix.Name{CommonName: "tokenwarden-worker"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var err error
	if p.serverPair, err = tls.LoadX509KeyPair(p.serverCert, p.serverKey); err != nil {
		t.Fatal(err)
	}
	return p
}

func selfSigned(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func (p *testPKI) issue(t *testing.T, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.writePEM(t, name+".crt", "CERTIFICATE", der), p.writePEM(t, name+".key", "PRIVATE KEY", kder)
}

func (p *testPKI) writePEM(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsProxy terminates TLS, requiring a client certificate of the test CA
// (as a Temporal frontend with mTLS does), and forwards the bytes to a
// plaintext Temporal frontend. It counts the handshakes that failed.
type tlsProxy struct {
	addr     string
	mu       sync.Mutex
	refused  int
	accepted int
}

func startTLSProxy(t *testing.T, p *testPKI, upstream string) *tlsProxy {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.serverPair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
		NextProtos:   []string{"h2"}, // gRPC insists on ALPN h2
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	px := &tlsProxy{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				px.forward(c.(*tls.Conn), upstream)
			}()
		}
	}()
	return px
}

func (px *tlsProxy) forward(c *tls.Conn, upstream string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	err := c.Handshake()
	px.mu.Lock()
	if err != nil {
		px.refused++
	} else {
		px.accepted++
	}
	px.mu.Unlock()
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (px *tlsProxy) counts() (accepted, refused int) {
	px.mu.Lock()
	defer px.mu.Unlock()
	return px.accepted, px.refused
}

func TestTemporalTLSConfig(t *testing.T) {
	p := newTestPKI(t)
	t.Run("off", func(t *testing.T) {
		tc, err := (&config{}).temporalTLSConfig()
		if tc != nil || err != nil {
			t.Fatalf("TLS off: %v, %v", tc, err)
		}
	})
	t.Run("CA, client certificate, server name", func(t *testing.T) {
		c := &config{temporalConn: temporalConn{TemporalTLS: true, TemporalCAFile: p.caFile,
			TemporalCertFile: p.cert, TemporalKeyFile: p.key, TemporalServerName: "temporal.test"}}
		tc, err := c.temporalTLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		if tc.RootCAs == nil || !tc.RootCAs.Equal(p.caPool) || tc.ServerName != "temporal.test" || tc.MinVersion != tls.VersionTLS12 {
			t.Errorf("TLS config: roots %v, server name %q, min version %x", tc.RootCAs, tc.ServerName, tc.MinVersion)
		}
		cert, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil || len(cert.Certificate) == 0 {
			t.Fatalf("client certificate: %v", err)
		}
		if leaf, _ := x509.ParseCertificate(cert.Certificate[0]); leaf.Subject.CommonName != "tokenwarden-worker" {
			t.Errorf("client certificate for %q", leaf.Subject.CommonName)
		}
	})
	t.Run("system roots without a CA file", func(t *testing.T) {
		tc, err := (&config{temporalConn: temporalConn{TemporalTLS: true}}).temporalTLSConfig()
		if err != nil || tc == nil || tc.RootCAs != nil || tc.GetClientCertificate != nil {
			t.Fatalf("plain TLS: %+v, %v", tc, err)
		}
	})
	// Every error names the flag and the variable that fix it, never
	// the key's content.
	missing := filepath.Join(p.dir, "missing.pem")
	for _, tc := range []struct {
		name string
		conn temporalConn
		want []string
	}{
		{"CA file missing", temporalConn{TemporalCAFile: missing}, []string{"-temporal-ca-file", "TOKENWARDEN_TEMPORAL_CA_FILE", "no such file"}},
		{"CA file holds a key", temporalConn{TemporalCAFile: p.key}, []string{"-temporal-ca-file", "holds no PEM certificate"}},
		{"certificate without key", temporalConn{TemporalCertFile: p.cert}, []string{"-temporal-cert-file and -temporal-key-file", "set both or neither"}},
		{"key file missing", temporalConn{TemporalCertFile: p.cert, TemporalKeyFile: missing}, []string{"-temporal-key-file", "TOKENWARDEN_TEMPORAL_KEY_FILE", "no such file"}},
		{"key of another certificate", temporalConn{TemporalCertFile: p.cert, TemporalKeyFile: p.serverKey}, []string{"-temporal-cert-file and -temporal-key-file", "not a certificate and its key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.conn.TemporalTLS = true
			_, err := (&config{temporalConn: tc.conn}).temporalTLSConfig()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if key, _ := os.ReadFile(p.key); strings.Contains(err.Error(), strings.TrimSpace(string(key))[30:60]) {
				t.Error("the error carries the private key")
			}
		})
	}
	if err := os.Chmod(p.key, 0); err == nil && os.Geteuid() != 0 {
		_, err := (&config{temporalConn: temporalConn{TemporalTLS: true, TemporalCertFile: p.cert, TemporalKeyFile: p.key}}).temporalTLSConfig()
		if err == nil || !strings.Contains(err.Error(), "-temporal-cert-file") {
			t.Errorf("unreadable key: %v", err)
		}
	}
}

func TestTemporalOptions(t *testing.T) {
	t.Setenv("TOKENWARDEN_TEMPORAL_API_KEY", "tw-test-temporal-api-key")
	t.Setenv("TOKENWARDEN_TEMPORAL_TLS", "")
	c := &config{}
	fs := newFlagSet("worker", io.Discard)
	c.register(fs)
	if err := fs.Parse([]string{"-temporal-address", "ns.acct.tmprl.cloud:7233", "-temporal-namespace", "ns.acct"}); err != nil {
		t.Fatal(err)
	}
	if !c.TemporalTLS {
		t.Error("an API key turns TLS on by default")
	}
	o, err := c.temporalOptions(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if o.HostPort != "ns.acct.tmprl.cloud:7233" || o.Namespace != "ns.acct" || o.ConnectionOptions.TLS == nil || o.Credentials == nil {
		t.Errorf("options: host %q namespace %q TLS %v credentials %v", o.HostPort, o.Namespace, o.ConnectionOptions.TLS, o.Credentials)
	}
	if o.MetricsHandler != nil || len(o.ConnectionOptions.DialOptions) != 0 {
		t.Error("the gateway's client gets no worker metrics")
	}
	if fs.Lookup("temporal-api-key") != nil {
		t.Error("the API key is a secret: environment only, never a flag (it would show in ps)")
	}
}

// TestTemporalMTLS dials the shared stack's Temporal through a proxy
// that terminates TLS and requires a client certificate of the test CA:
// with the certificate the client connects, without it (or trusting
// another CA) it fails with an error that says why.
func TestTemporalMTLS(t *testing.T) {
	info := testenv.StackInfo(t)
	t.Parallel()
	p := newTestPKI(t)
	px := startTLSProxy(t, p, info.TemporalAddress)
	base := temporalConn{TemporalTLS: true, TemporalCAFile: p.caFile, TemporalServerName: "temporal.test"}
	dial := func(conn temporalConn) error {
		c := &config{TemporalAddress: px.addr, TemporalNamespace: info.TemporalNamespace, temporalConn: conn}
		o, err := c.temporalOptions(slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tc, err := client.DialContext(ctx, o)
		if err != nil {
			return err
		}
		defer tc.Close()
		_, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}

	withCert := base
	withCert.TemporalCertFile, withCert.TemporalKeyFile = p.cert, p.key
	if err := dial(withCert); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if accepted, _ := px.counts(); accepted == 0 {
		t.Fatal("the client did not go through the TLS proxy")
	}

	// Without a certificate, TLS 1.3 lets the client finish its side of
	// the handshake before the server refuses it: what the client sees
	// may be a bare "broken pipe". The wait message of the worker and
	// the gateway says what they presented.
	noCert := &config{TemporalAddress: px.addr, TemporalNamespace: info.TemporalNamespace, temporalConn: base}
	o, err := noCert.temporalOptions(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lazy, err := client.NewLazyClient(o)
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	res := health.Run(context.Background(), 10*time.Second, health.Temporal(lazy, noCert.temporalTarget()))
	if res[0].OK || !strings.Contains(res[0].Error, px.addr+" over TLS (CA "+p.caFile+", no client certificate, server name temporal.test)") {
		t.Errorf("without a client certificate: %+v; want a failure naming the TLS settings", res[0])
	}
	if err := dial(base); err == nil {
		t.Fatal("without a client certificate the dial succeeded")
	}
	wrongCA := withCert
	wrongCA.TemporalCAFile = p.otherCAFile
	if err := dial(wrongCA); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("trusting another CA: %v", err)
	}
	wrongName := withCert
	wrongName.TemporalServerName = "elsewhere.test"
	if err := dial(wrongName); err == nil || !strings.Contains(err.Error(), "elsewhere.test") {
		t.Errorf("another server name: %v", err)
	}
	if _, refused := px.counts(); refused == 0 {
		t.Error("the proxy refused no handshake")
	}
}
