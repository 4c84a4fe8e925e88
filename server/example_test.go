package server_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyloop/keyloop/server"
)

// A backend serving CLI logins in dev mode, plus one protected API route.
func ExampleNew() {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()

	key, _ := server.GenerateKey() // dev: server.LoadOrCreateKeyFile(path)
	minter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
	dev, _ := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32))})
	h, err := server.New(server.Config{
		Issuer:        issuer,
		Clients:       []server.Client{{ID: "mytool", Name: "mytool"}},
		Authenticator: dev,
		Minter:        minter,
	})
	if err != nil {
		panic(err)
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle("/oauth/", h)
	mux.Handle("GET /api/me", h.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := server.ClaimsFromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"sub": c.Subject})
	})))
	srv.Config.Handler = mux
	srv.Start()
	defer srv.Close()

	resp, _ := http.Get(issuer + server.MetadataPath)
	var md struct {
		TokenEndpoint string   `json:"token_endpoint"`
		PKCE          []string `json:"code_challenge_methods_supported"`
	}
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	fmt.Println(strings.TrimPrefix(md.TokenEndpoint, issuer), md.PKCE)

	resp, _ = http.Get(issuer + "/api/me")
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	// Output:
	// /oauth/token [S256]
	// 401 Bearer
}

// Minting and verifying a token with a self-signed key.
func ExampleNewSelfSigned() {
	now := func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) }
	key, _ := server.GenerateKey()
	m, err := server.NewSelfSigned(server.SelfSignedConfig{
		Issuer:   "https://auth.example.com",
		Key:      key,
		Lifetime: time.Hour,
		Now:      now,
	})
	if err != nil {
		panic(err)
	}
	tok, _ := m.Mint(context.Background(), server.Grant{
		Identity: server.Identity{Subject: "user_1", Email: "ada@example.com"},
		ClientID: "mytool",
	})
	jwks, _ := m.JWKS()
	v, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://auth.example.com", JWKS: jwks, Now: now})
	c, err := v.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Algorithm(), c.Subject, c.Email, c.ClientID, c.Expiry.Format(time.RFC3339))
	// Output: EdDSA user_1 ada@example.com mytool 2026-05-01T13:00:00Z
}

// A key set shared by replicas, rotated without downtime: each step is a
// change to the key directory (a secret volume, say) followed by a Reload on
// every replica (or Watch, which reloads periodically).
func ExampleLoadKeyDir() {
	dir, _ := os.MkdirTemp("", "keys")
	defer os.RemoveAll(dir)
	write := func(name string, b []byte) { os.WriteFile(filepath.Join(dir, name), b, 0o600) }
	newKey := func(id string) { // openssl genpkey -algorithm ed25519 -out DIR/ID.pem
		k, _ := server.GenerateKey()
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		write(id+".pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	newKey("2026-01")

	keys, err := server.LoadKeyDir(dir)
	if err != nil {
		panic(err)
	}
	minter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://auth.example.com", Keys: keys})
	ctx := context.Background()
	// go keys.Watch(ctx, time.Minute, func(err error) { log.Print(err) })

	// 1. Publish the new key; the old one still signs.
	newKey("2026-06")
	write(server.ActiveKeysFile, []byte("2026-01\n"))
	keys.Reload(ctx)
	fmt.Println(keys)
	// 2. Once every replica and JWKS cache has it: switch signing.
	write(server.ActiveKeysFile, []byte("2026-06\n"))
	keys.Reload(ctx)
	fmt.Println(minter.KeyID())
	// 3. Once the old key's last token has expired: retire it.
	os.Remove(filepath.Join(dir, "2026-01.pem"))
	keys.Reload(ctx)
	fmt.Println(keys)
	// Output:
	// 2026-01 EdDSA (active, primary), 2026-06 EdDSA (published)
	// 2026-06
	// 2026-06 EdDSA (active, primary)
}

// Keys from an environment variable (a JWK Set, or PEM), with an RS256 key
// for OpenID Connect ID tokens beside the EdDSA key that signs access tokens.
func ExampleParseKeys() {
	ed, _ := server.GenerateKey()
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	var pemKeys []byte
	for _, k := range []crypto.Signer{ed, rs} {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		pemKeys = append(pemKeys, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	os.Setenv("EXAMPLE_SIGNING_KEYS", string(pemKeys))

	keys, err := server.ParseKeys([]byte(os.Getenv("EXAMPLE_SIGNING_KEYS")))
	if err != nil {
		panic(err)
	}
	keys[0].ID, keys[1].ID = "ed-1", "rsa-1" // PEM keys get their thumbprint otherwise
	set, err := server.NewKeySet(keys, "ed-1", "rsa-1")
	if err != nil {
		panic(err)
	}
	idTokenKey, _ := set.Signer("RS256")
	fmt.Println(set.Algorithms(), idTokenKey.ID)
	// Output: [EdDSA RS256] rsa-1
}
