package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
