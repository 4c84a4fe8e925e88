package clilogin

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyTable(t *testing.T) {
	clock := newClock()
	as := newAuthServer(t, clock) // for sign()
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	psKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// The server's JWKS, as JSON, the way the client gets it.
	set := jwkset.NewMemoryStorage()
	for _, k := range []struct {
		key any
		kid string
		alg jwkset.ALG
	}{
		{edPub, "ed", jwkset.AlgEdDSA}, {&rsaKey.PublicKey, "rsa", jwkset.AlgRS256},
		{&psKey.PublicKey, "ps", jwkset.AlgPS256}, {&ecKey.PublicKey, "ec", jwkset.AlgES256},
	} {
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		if err := set.KeyWrite(t.Context(), j); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := set.JSONPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		t.Fatal(err)
	}

	const iss, aud = "https://auth.example", "https://api.example"
	now := clock.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": iss, "aud": aud, "sub": "user-1", "email": "a@example.com",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	ed := func(edit func(jwt.MapClaims)) string {
		return as.sign(jwt.SigningMethodEdDSA, edKey, "ed", claims(edit))
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hsTok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hsTok.Header["kid"] = "ed"
	hs, _ := hsTok.SignedString([]byte(edPub))

	for _, tc := range []struct {
		name string
		tok  string
		aud  string
		ok   bool
	}{
		{"EdDSA", ed(nil), aud, true},
		{"RS256", as.sign(jwt.SigningMethodRS256, rsaKey, "rsa", claims(nil)), aud, true},
		{"PS256", as.sign(jwt.SigningMethodPS256, psKey, "ps", claims(nil)), aud, true},
		{"ES256", as.sign(jwt.SigningMethodES256, ecKey, "ec", claims(nil)), aud, true},
		{"no audience expected", ed(func(c jwt.MapClaims) { delete(c, "aud") }), "", true},
		{"expired within leeway", ed(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }), aud, true},
		{"expired", ed(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), aud, false},
		{"missing exp", ed(func(c jwt.MapClaims) { delete(c, "exp") }), aud, false},
		{"nbf in the future", ed(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), aud, false},
		{"iat in the future", ed(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }), aud, false},
		{"wrong issuer", ed(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), aud, false},
		{"wrong audience", ed(func(c jwt.MapClaims) { c["aud"] = "https://other.example" }), aud, false},
		{"missing audience", ed(func(c jwt.MapClaims) { delete(c, "aud") }), aud, false},
		{"missing subject", ed(func(c jwt.MapClaims) { delete(c, "sub") }), aud, false},
		{"wrong key", as.sign(jwt.SigningMethodEdDSA, otherEd, "ed", claims(nil)), aud, false},
		{"unknown kid", as.sign(jwt.SigningMethodEdDSA, edKey, "nope", claims(nil)), aud, false},
		{"alg none", none, aud, false},
		{"HS256 with the public key as secret", hs, aud, false},
		{"RS256 under the EdDSA kid", as.sign(jwt.SigningMethodRS256, rsaKey, "ed", claims(nil)), aud, false},
		{"not a JWT", "opaque-token", aud, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Issuer: iss, ClientID: "c", AppName: "a", Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			cl, err := c.verifyWith(t.Context(), kf.KeyfuncCtx(t.Context()), tc.tok, expect{issuer: iss, audience: tc.aud})
			if tc.ok != (err == nil) {
				t.Fatalf("verify: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("err = %v, want ErrInvalidToken", err)
				}
				if strings.Contains(err.Error(), tc.tok) || strings.Contains(err.Error(), "user-1") {
					t.Errorf("error quotes the token or a claim: %v", err)
				}
				return
			}
			if cl.Subject != "user-1" || cl.Account != "a@example.com" || !cl.IssuedAt.Equal(now) {
				t.Errorf("claims = %+v", cl)
			}
		})
	}
}
