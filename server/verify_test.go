package server_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/keyloop/keyloop/server"
)

// catMinter is a Minter whose tokens must carry "cat" (as Clerk's do).
type catMinter struct{ *server.SelfSigned }

func (catMinter) CheckAccessToken(header, claims map[string]any) error {
	if claims["cat"] != "cl_B7d4PD111AAA" {
		return errors.New("not a template token")
	}
	return nil
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBearerMiddleware(t *testing.T) {
	const aud = "https://api.example.com"
	e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Audience = aud; c.Lifetime = time.Hour }})
	now := e.clock.Now()
	other, _ := server.GenerateKey()
	mint := func(c server.SelfSignedConfig) string {
		t.Helper()
		if c.Issuer == "" {
			c.Issuer = e.issuer
		}
		if c.Key == nil {
			c.Key = e.key
		}
		if c.Now == nil {
			c.Now = e.clock.Now
		}
		m, err := server.NewSelfSigned(c)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := m.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: "u1", Email: "u1@example.com"}, ClientID: "mytool", LoginSessionID: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": e.issuer, "aud": aud, "sub": "u1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	kid := e.minter.KeyID()
	pub := []byte(e.key.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"valid", mint(server.SelfSignedConfig{Audience: aud}), true},
		{"valid, hand-made", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(nil)), true},
		{"expired within leeway", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), true},
		{"expired", mint(server.SelfSignedConfig{Audience: aud, Now: func() time.Time { return now.Add(-2 * time.Hour) }, Lifetime: time.Hour}), false},
		{"not yet valid", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() })), false},
		{"issued in the future", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() })), false},
		{"missing exp", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { delete(c, "exp") })), false},
		{"missing sub", sign(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { delete(c, "sub") })), false},
		{"wrong issuer", mint(server.SelfSignedConfig{Audience: aud, Issuer: "https://evil.example.com"}), false},
		{"wrong audience", mint(server.SelfSignedConfig{Audience: "https://other.example.com"}), false},
		{"no audience", mint(server.SelfSignedConfig{}), false},
		{"wrong key, same kid", mint(server.SelfSignedConfig{Audience: aud, Key: other, KeyID: kid}), false},
		{"unknown kid", mint(server.SelfSignedConfig{Audience: aud, Key: other}), false},
		{"no kid, wrong key", sign(t, jwt.SigningMethodEdDSA, other, "", claims(nil)), false},
		{"no kid, right key", sign(t, jwt.SigningMethodEdDSA, e.key, "", claims(nil)), false},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, claims(nil)), false},
		{"HS256 with the public key bytes", sign(t, jwt.SigningMethodHS256, pub, kid, claims(nil)), false},
		{"malformed", "not.a.jwt", false},
		{"tampered", mint(server.SelfSignedConfig{Audience: aud}) + "A", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h := e.apiMe(tc.token)
			if tc.ok != (st == 200) {
				t.Fatalf("status %d, want ok=%t", st, tc.ok)
			}
			if !tc.ok && h.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
			_, err := e.h.VerifyToken(context.Background(), tc.token)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, server.ErrInvalidToken)) {
				t.Fatalf("VerifyToken: %v", err)
			}
		})
	}
	t.Run("no or wrong scheme", func(t *testing.T) {
		for _, hdr := range []string{"", "Basic dTpw", "Bearer", "Bearer a b"} {
			req, _ := http.NewRequest("GET", e.issuer+"/api/me", nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatalf("%q: %d %q", hdr, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	})
}

func TestMinterCheckHook(t *testing.T) {
	var cm catMinter
	e := newEnv(t, envOpts{configure: func(c *server.Config) {
		cm = catMinter{c.Minter.(*server.SelfSigned)}
		c.Minter = cm
	}})
	plain := e.login().AccessToken
	if st, _ := e.apiMe(plain); st != 401 {
		t.Fatalf("token without cat accepted: %d", st)
	}
	withCat := sign(t, jwt.SigningMethodEdDSA, e.key, e.minter.KeyID(), jwt.MapClaims{
		"iss": e.issuer, "aud": e.issuer, "sub": "u1", "exp": e.clock.Now().Add(time.Hour).Unix(), "cat": "cl_B7d4PD111AAA"})
	if st, _ := e.apiMe(withCat); st != 200 {
		t.Fatalf("token with cat refused: %d", st)
	}
}

func TestVerifierConfig(t *testing.T) {
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", AllowEphemeralKey: true})
	jwks, _ := m.JWKS()
	for name, c := range map[string]server.VerifierConfig{
		"no issuer":   {JWKS: jwks},
		"no keys":     {Issuer: "https://i"},
		"both keys":   {Issuer: "https://i", JWKS: jwks, JWKSURL: "https://i/jwks"},
		"HS256":       {Issuer: "https://i", JWKS: jwks, Algorithms: []string{"HS256"}},
		"none":        {Issuer: "https://i", JWKS: jwks, Algorithms: []string{"none"}},
		"bad JWKS":    {Issuer: "https://i", JWKS: []byte("{")},
		"unknown alg": {Issuer: "https://i", JWKS: jwks, Algorithms: []string{"XX1"}},
	} {
		if _, err := server.NewVerifier(c); !errors.Is(err, server.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var _ crypto.Signer = ed25519.PrivateKey(nil)
}

// A Verifier with a remote JWKS (the path Clerk takes) fetches keys lazily.
func TestVerifierRemoteJWKS(t *testing.T) {
	e := newEnv(t, envOpts{})
	v, err := server.NewVerifier(server.VerifierConfig{Issuer: e.issuer, JWKSURL: e.issuer + server.JWKSPath, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := e.login()
	c, err := v.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != server.DevSubject("ada@example.com") || c.ClientID != "mytool" || c.SessionID == "" || c.Expiry.IsZero() {
		t.Fatalf("claims %+v", c)
	}
}
