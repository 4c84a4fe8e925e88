package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyloop/keyloop/server"
)

// pubOnly is a crypto.Signer that only knows its public key.
type pubOnly struct{ pub crypto.PublicKey }

func (p pubOnly) Public() crypto.PublicKey { return p.pub }
func (pubOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("no")
}

// RFC 7638 §3.1's example key and thumbprint.
func TestSelfSignedDefaultKeyIDIsRFC7638Thumbprint(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: pubOnly{&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.KeyID(); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("kid %s", got)
	}
}

func TestSelfSignedKeyTypes(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsSmall, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{{"P-256", ec, "ES256"}, {"RSA", rs, "RS256"}, {"P-384", ec384, ""}, {"RSA-1024", rsSmall, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.alg == "" {
				if _, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: tc.key}); !errors.Is(err, server.ErrInvalidConfig) {
					t.Fatalf("err %v", err)
				}
				return
			}
			e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Key = tc.key }})
			if e.minter.Algorithm() != tc.alg {
				t.Fatalf("alg %s", e.minter.Algorithm())
			}
			if st, _ := e.apiMe(e.login().AccessToken); st != 200 {
				t.Fatalf("%s token refused: %d", tc.alg, st)
			}
			var set struct{ Keys []map[string]string }
			b, _ := e.minter.JWKS()
			if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["alg"] != tc.alg || set.Keys[0]["kid"] != e.minter.KeyID() {
				t.Fatalf("JWKS %s", b)
			}
		})
	}
}

func TestSelfSignedClaims(t *testing.T) {
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", AllowEphemeralKey: true})
	tok, err := m.Mint(context.Background(), server.Grant{
		Identity: server.Identity{Subject: "u1", Email: "e@x.io", Name: "E", Claims: map[string]any{"org": "acme", "iss": "evil", "sub": "evil"}},
		ClientID: "mytool", LoginSessionID: "s1",
	})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", JWKS: mustJWKS(t, m)})
	c, err := v.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "u1" || c.Issuer != "https://i" || c.Raw["org"] != "acme" || c.Email != "e@x.io" || c.Name != "E" ||
		c.SessionID != "s1" || c.ClientID != "mytool" || c.Raw["azp"] != "mytool" || c.Raw["jti"] == nil || c.Raw["nbf"] == nil ||
		!c.Expiry.Equal(tok.Expiry) || c.Expiry.Sub(c.IssuedAt) != server.DefaultTokenLifetime {
		t.Fatalf("claims %+v", c)
	}
	if _, err := server.NewSelfSigned(server.SelfSignedConfig{}); !errors.Is(err, server.ErrInvalidConfig) {
		t.Fatalf("missing issuer: %v", err)
	}
}

func mustJWKS(t *testing.T, m *server.SelfSigned) []byte {
	b, err := m.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "key.pem")
	keys := make([]crypto.Signer, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := server.LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k == nil || !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(keys[0].Public()) {
			t.Fatal("concurrent callers got different keys")
		}
	}
	st, _ := os.Stat(path)
	dst, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Fatalf("modes %v %v", st.Mode(), dst.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	again, err := server.LoadOrCreateKeyFile(path)
	if err != nil || !again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(keys[0].Public()) {
		t.Fatalf("reload: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := server.LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("world-readable key accepted")
	}
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600)
	if _, err := server.LoadOrCreateKeyFile(filepath.Join(dir, "junk.pem")); err == nil {
		t.Fatal("junk accepted")
	}
	s1, err := server.LoadOrCreateSecretFile(filepath.Join(dir, "cookie.key"))
	s2, err2 := server.LoadOrCreateSecretFile(filepath.Join(dir, "cookie.key"))
	if err != nil || err2 != nil || len(s1) != 32 || string(s1) != string(s2) {
		t.Fatalf("secret file: %v %v", err, err2)
	}
}

// A key path that names a directory is refused as not a key file, not as a
// file whose mode lets others read it.
func TestLoadKeyFileThatIsADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing-key.pem")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func(string) error{
		"LoadOrCreateKeyFile":    func(p string) error { _, err := server.LoadOrCreateKeyFile(p); return err },
		"LoadOrCreateRSAKeyFile": func(p string) error { _, err := server.LoadOrCreateRSAKeyFile(p); return err },
		"LoadOrCreateSecretFile": func(p string) error { _, err := server.LoadOrCreateSecretFile(p); return err },
	} {
		err := load(dir)
		if err == nil || !strings.Contains(err.Error(), "is not a regular file") || strings.Contains(err.Error(), "chmod") {
			t.Errorf("%s(a directory): %v", name, err)
		}
	}
}
