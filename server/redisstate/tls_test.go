package redisstate_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
)

// selfSignedCA writes a CA and a server certificate for localhost into dir
// and returns the paths and the CA's pool.
func serverCert(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyloop test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return certFile, keyFile, roots
}

// rediss:// URLs (hosted Redis) connect over TLS, verify the server's
// certificate, and authenticate with the URL's password.
func TestTLS(t *testing.T) {
	certDir, err := os.MkdirTemp("", "kl-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(certDir) })
	certFile, keyFile, roots := serverCert(t, certDir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	testenv.Redis(t, "--tls-port", port, "--bind", "127.0.0.1", "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-auth-clients", "no", "--requirepass", "s3cret-pw")
	ctx := t.Context()

	s := open(t, "rediss://:s3cret-pw@localhost:"+port+"/2", redisstate.Options{TLSConfig: &tls.Config{RootCAs: roots}})
	if err := s.Put(ctx, "k", []byte("over TLS"), time.Minute); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "over TLS" {
		t.Fatalf("Get over TLS = %q, %v", v, err)
	}

	for name, url := range map[string]string{
		"unknown CA":     "rediss://:s3cret-pw@localhost:" + port,
		"wrong password": "rediss://:wrong-pw@localhost:" + port,
		"plain TCP":      "redis://:s3cret-pw@localhost:" + port,
	} {
		var opts redisstate.Options
		if name != "unknown CA" {
			opts.TLSConfig = &tls.Config{RootCAs: roots}
		}
		s := open(t, url, opts)
		err := s.Ping(ctx)
		if !errors.Is(err, server.ErrStateUnavailable) {
			t.Errorf("%s: Ping = %v; want ErrStateUnavailable", name, err)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong-pw")) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}
