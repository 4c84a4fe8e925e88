package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/keyloop/keyloop/server"
)

// writePEM writes key to dir/name as PKCS #8 PEM, mode 0600.
func writePEM(t *testing.T, dir, name string, key crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	// Write beside and rename, as an operator's tooling would: a reload
	// never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func privateJWK(t *testing.T, key crypto.Signer, kid string) []byte {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}, Marshal: jwkset.JWKMarshalOptions{Private: true}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksKIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, Alg, Use string } `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range set.Keys {
		if k.Use != "sig" || k.Alg == "" {
			t.Fatalf("JWK without use/alg: %s", b)
		}
		ids = append(ids, k.Kid)
	}
	return ids
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

func TestLoadKeyDirFormats(t *testing.T) {
	ed, _ := server.GenerateKey()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	dir := t.TempDir()
	writePEM(t, dir, "ed.pem", ed)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	writeFile(t, filepath.Join(dir, "ec.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	writeFile(t, filepath.Join(dir, "rsa.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs)}))
	ed2, _ := server.GenerateKey()
	writeFile(t, filepath.Join(dir, "ed-jwk.jwk"), privateJWK(t, ed2, "ed-jwk"))
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeFile(t, filepath.Join(dir, "ec-json.json"), privateJWK(t, ec2, ""))
	// A Kubernetes secret volume's bookkeeping is skipped.
	os.Mkdir(filepath.Join(dir, "..data"), 0o700)
	writeFile(t, filepath.Join(dir, ".hidden"), []byte("x"))
	writeFile(t, filepath.Join(dir, server.ActiveKeysFile), []byte("ed\nrsa ec\n"))

	ks, err := server.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ks.JWKS()
	if got := strings.Join(jwksKIDs(t, b), ","); got != "ec-json,ec,ed-jwk,ed,rsa" {
		t.Fatalf("JWKS kids %s", got)
	}
	for alg, kid := range map[string]string{"": "ed", "EdDSA": "ed", "RS256": "rsa", "ES256": "ec"} {
		k, err := ks.Signer(alg)
		if err != nil || k.ID != kid {
			t.Fatalf("Signer(%q) = %s, %v; want %s", alg, k.ID, err, kid)
		}
	}
	if got := strings.Join(ks.Algorithms(), ","); got != "EdDSA,ES256,RS256" {
		t.Fatalf("Algorithms %s", got)
	}
	if s := ks.String(); !strings.Contains(s, "ed EdDSA (active, primary)") || !strings.Contains(s, "ed-jwk EdDSA (published)") {
		t.Fatalf("String %q", s)
	}
	// Every key, published or active, verifies what it signs.
	for _, kid := range []string{"ed", "rsa", "ec"} {
		_, alg, ok := ks.PublicKey(kid)
		k, _ := ks.Signer(alg)
		tok, err := k.Sign(jwt.MapClaims{"iss": "https://i", "sub": "u", "exp": time.Now().Add(time.Hour).Unix()})
		if !ok || err != nil {
			t.Fatal(kid, err)
		}
		v, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", KeySet: ks})
		if c, err := v.Verify(context.Background(), tok); err != nil || c.Subject != "u" || kidOf(t, tok) != kid {
			t.Fatalf("%s token: %v", alg, err)
		}
	}
}

func TestLoadKeyDirRefusals(t *testing.T) {
	ed, _ := server.GenerateKey()
	ed2, _ := server.GenerateKey()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"empty", func(string) {}, "holds no key files"},
		{"two keys, no active file", func(d string) { writePEM(t, d, "a.pem", ed); writePEM(t, d, "b.pem", ed2) }, `no "active" file`},
		{"active names a missing key", func(d string) {
			writePEM(t, d, "a.pem", ed)
			writeFile(t, filepath.Join(d, "active"), []byte("b"))
		}, `active key "b" is not in the set`},
		{"two active keys of one algorithm", func(d string) {
			writePEM(t, d, "a.pem", ed)
			writePEM(t, d, "b.pem", ed2)
			writeFile(t, filepath.Join(d, "active"), []byte("a b"))
		}, "both active for EdDSA"},
		{"empty active file", func(d string) { writePEM(t, d, "a.pem", ed); writeFile(t, filepath.Join(d, "active"), []byte("\n")) }, "is empty"},
		{"readable by others", func(d string) { writePEM(t, d, "a.pem", ed); os.Chmod(filepath.Join(d, "a.pem"), 0o644) }, "chmod 600"},
		{"unknown file", func(d string) { writePEM(t, d, "a.pem", ed); writeFile(t, filepath.Join(d, "b.pm"), []byte("x")) }, "neither a key file"},
		{"junk key file", func(d string) { writeFile(t, filepath.Join(d, "a.pem"), []byte("junk")) }, "neither PEM nor a JWK"},
		{"public key file", func(d string) {
			der, _ := x509.MarshalPKIXPublicKey(ed.Public())
			writeFile(t, filepath.Join(d, "a.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}, "not a private key"},
		{"public JWK", func(d string) {
			j, _ := jwkset.NewJWKFromKey(ed.Public(), jwkset.JWKOptions{})
			b, _ := json.Marshal(j.Marshal())
			writeFile(t, filepath.Join(d, "a.jwk"), b)
		}, "is a public key"},
		{"JWK kid differs from the file name", func(d string) { writeFile(t, filepath.Join(d, "a.jwk"), privateJWK(t, ed, "b")) }, "differs from the file name"},
		{"RSA 1024", func(d string) { writePEM(t, d, "a.pem", small) }, "at least 2048 bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			_, err := server.LoadKeyDir(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Fatal("key material in the error")
			}
		})
	}
	if _, err := server.LoadKeyDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	ed, _ := server.GenerateKey()
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	set := []byte(`{"keys":[` + string(privateJWK(t, ed, "one")) + `,` + string(privateJWK(t, rs, "two")) + `]}`)
	keys, err := server.ParseKeys(set)
	if err != nil || len(keys) != 2 || keys[0].ID != "one" || keys[1].ID != "two" {
		t.Fatalf("JWK Set: %v %+v", err, keys)
	}
	ks, err := server.NewKeySet(keys, "two", "one")
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := ks.Signer(""); k.ID != "two" || k.Algorithm != "RS256" {
		t.Fatalf("primary %s %s", k.ID, k.Algorithm)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ed)
	der2, _ := x509.MarshalPKCS8PrivateKey(rs)
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der2})...)
	keys, err = server.ParseKeys(bundle)
	if err != nil || len(keys) != 2 || keys[0].ID != "" {
		t.Fatalf("PEM bundle: %v %+v", err, keys)
	}
	if _, err := server.NewKeySet(keys); err == nil || !strings.Contains(err.Error(), "none named active") {
		t.Fatalf("two keys without active: %v", err)
	}
	// A single PEM key is active by itself; its ID is the RFC 7638 thumbprint.
	one, err := server.NewKeySet(keys[:1])
	if err != nil {
		t.Fatal(err)
	}
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: ed})
	if k, _ := one.Signer(""); k.ID != m.KeyID() {
		t.Fatalf("kid %s, thumbprint %s", k.ID, m.KeyID())
	}
	for _, bad := range []string{"", "junk", "{}", `{"keys":[]}`, "{", `{"kty":"OKP"}`} {
		if _, err := server.ParseKeys([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := server.NewKeySet([]server.SigningKey{{ID: "x", Key: ed, Algorithm: "RS256"}}); !errors.Is(err, server.ErrInvalidConfig) {
		t.Fatalf("wrong algorithm accepted: %v", err)
	}
	if _, err := server.NewKeySet([]server.SigningKey{{ID: "x", Key: ed}, {ID: "x", Key: rs}}, "x"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate kid: %v", err)
	}
}

// A backend must not sign with a key it made up: a key file that failed to
// load (the README used to ignore LoadOrCreateKeyFile's error) left Key nil,
// and NewSelfSigned silently minted with a fresh key per process, so every
// restart logged every CLI out.
func TestSelfSignedRefusesEphemeralKeyUnlessAsked(t *testing.T) {
	key, err := server.LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "missing-dir", "\x00bad"))
	if err == nil {
		t.Fatal("LoadOrCreateKeyFile on an impossible path succeeded")
	}
	_, err = server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: key})
	if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), "AllowEphemeralKey") {
		t.Fatalf("nil key: %v", err)
	}
	m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", AllowEphemeralKey: true})
	if err != nil || m.Algorithm() != "EdDSA" {
		t.Fatalf("ephemeral: %v", err)
	}
	ks, _ := server.NewKeySet([]server.SigningKey{{ID: "a", Key: mustKey(t)}})
	for name, c := range map[string]server.SelfSignedConfig{
		"Key and Keys":            {Issuer: "https://i", Key: mustKey(t), Keys: ks},
		"KeyID with Keys":         {Issuer: "https://i", Keys: ks, KeyID: "x"},
		"no active RS256 key":     {Issuer: "https://i", Keys: ks, Algorithm: "RS256"},
		"negative lifetime":       {Issuer: "https://i", Keys: ks, Lifetime: -time.Second},
		"ephemeral and no issuer": {AllowEphemeralKey: true},
	} {
		if _, err := server.NewSelfSigned(c); !errors.Is(err, server.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustKey(t *testing.T) crypto.Signer {
	k, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Access tokens signed with the algorithm SelfSignedConfig.Algorithm names,
// and an RS256 signer for OpenID Connect ID tokens from the same set.
func TestSelfSignedAlgorithmFromKeySet(t *testing.T) {
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	ks, err := server.NewKeySet([]server.SigningKey{{ID: "ed", Key: mustKey(t)}, {ID: "rs", Key: rs}}, "ed", "rs")
	if err != nil {
		t.Fatal(err)
	}
	for alg, kid := range map[string]string{"": "ed", "RS256": "rs"} {
		e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Key, c.Keys, c.Algorithm = nil, ks, alg }})
		tok := e.login().AccessToken
		if kidOf(t, tok) != kid || e.minter.KeyID() != kid {
			t.Fatalf("alg %q: kid %s", alg, kidOf(t, tok))
		}
		if st, _ := e.apiMe(tok); st != 200 {
			t.Fatalf("alg %q: /api/me %d", alg, st)
		}
		if e.minter.KeySet() != ks {
			t.Fatal("KeySet() is not the configured set")
		}
	}
	idSigner, err := ks.Signer("RS256")
	if err != nil || idSigner.ID != "rs" || idSigner.Algorithm != "RS256" {
		t.Fatalf("RS256 signer: %+v %v", idSigner, err)
	}
	if _, err := ks.Signer("ES256"); !errors.Is(err, server.ErrNoSigningKey) {
		t.Fatalf("ES256: %v", err)
	}
}

// A bad edit of the key directory never takes keys away: Reload reports it
// and the set keeps signing and verifying as before.
func TestKeySetReloadKeepsKeysOnBadEdit(t *testing.T) {
	dir := t.TempDir()
	writePEM(t, dir, "a.pem", mustKey(t))
	ks, err := server.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ks.JWKS()
	ctx := context.Background()
	for _, edit := range []func(){
		func() { writePEM(t, dir, "b.pem", mustKey(t)) },                   // two keys, no active file
		func() { writeFile(t, filepath.Join(dir, "active"), []byte("c")) }, // names a missing key
		func() { os.Chmod(filepath.Join(dir, "a.pem"), 0o644) },
		func() { os.RemoveAll(dir) },
	} {
		edit()
		if err := ks.Reload(ctx); err == nil {
			t.Fatal("a bad key directory reloaded")
		}
		if after, _ := ks.JWKS(); string(after) != string(before) {
			t.Fatal("a failed reload changed the set")
		}
		if k, err := ks.Signer(""); err != nil || k.ID != "a" {
			t.Fatalf("signer after a failed reload: %v", err)
		}
	}
	st, _ := server.NewKeySet([]server.SigningKey{{Key: mustKey(t)}})
	if err := st.Reload(ctx); err != nil {
		t.Fatalf("Reload of a set without a source: %v", err)
	}
}

// Key rotation while clients hold tokens from the old key: every step of
// the documented procedure (add, switch, retire) is taken while requests
// with old and new tokens keep arriving at the bearer middleware and at a
// Verifier that fetched the JWKS remotely before the rotation started. No
// request fails until the old key is retired, and tokens keep verifying
// across Reloads.
func TestKeyRotationWhileClientsHoldTokens(t *testing.T) {
	dir := t.TempDir()
	writePEM(t, dir, "2026-01.pem", mustKey(t))
	ks, err := server.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Key, c.Keys = nil, ks }})
	remote, err := server.NewVerifier(server.VerifierConfig{Issuer: e.issuer, JWKSURL: e.issuer + server.JWKSPath, Now: e.clock.Now,
		JWKSUnknownKIDInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	ctx := context.Background()

	login := e.login() // token from the old key, plus a refresh token
	oldTok := login.AccessToken
	if _, err := remote.Verify(ctx, oldTok); err != nil {
		t.Fatal(err)
	}

	// Clients keep calling the API with every token they hold while the
	// operator rotates.
	var (
		mu       sync.Mutex
		tokens   = []string{oldTok}
		failures atomic.Int64
		calls    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	hold := func(tok string) {
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				toks := append([]string(nil), tokens...)
				mu.Unlock()
				for _, tok := range toks {
					calls.Add(1)
					if st, _ := e.apiMe(tok); st != 200 {
						failures.Add(1)
						t.Errorf("/api/me refused a live token (kid %s): %d", kidOf(t, tok), st)
					}
					if _, err := remote.Verify(ctx, tok); err != nil {
						failures.Add(1)
						t.Errorf("remote verifier refused a live token (kid %s): %v", kidOf(t, tok), err)
					}
				}
			}
		})
	}
	rt := login.RefreshToken
	refresh := func() string {
		t.Helper()
		st, m := e.refresh(rt)
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, m)
		}
		rt = m["refresh_token"].(string)
		tok := m["access_token"].(string)
		hold(tok)
		return tok
	}
	reload := func() {
		t.Helper()
		if err := ks.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// served is the set of the Minter's key IDs the handler's JWKS
	// endpoint serves (it also serves an ID-token key of its own).
	served := func() string {
		t.Helper()
		resp, err := http.Get(e.issuer + server.JWKSPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", server.JWKSPath, resp.StatusCode, err)
		}
		return strings.Join(slices.DeleteFunc(jwksKIDs(t, b), func(kid string) bool { return !strings.HasPrefix(kid, "2026-") }), ",")
	}
	if got := served(); got != "2026-01" {
		t.Fatalf("JWKS served before the rotation: %s", got)
	}

	// 1. Add the new key: published, not signing.
	writePEM(t, dir, "2026-06.pem", mustKey(t))
	writeFile(t, filepath.Join(dir, server.ActiveKeysFile), []byte("2026-01\n"))
	reload()
	b, _ := e.minter.JWKS()
	if got := strings.Join(jwksKIDs(t, b), ","); got != "2026-01,2026-06" {
		t.Fatalf("JWKS after adding: %s", got)
	}
	if got := served(); got != "2026-01,2026-06" {
		t.Fatalf("JWKS served after adding: %s", got)
	}
	if kid := kidOf(t, refresh()); kid != "2026-01" {
		t.Fatalf("signed with %s before the switch", kid)
	}
	// 2. Switch signing.
	writeFile(t, filepath.Join(dir, server.ActiveKeysFile), []byte("2026-06\n"))
	reload()
	newTok := refresh()
	if kid := kidOf(t, newTok); kid != "2026-06" {
		t.Fatalf("signed with %s after the switch", kid)
	}
	e.login() // a fresh login signs with the new key too
	for range 3 {
		refresh()
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d requests failed during the rotation", failures.Load(), calls.Load())
	}

	// 3. Retire the old key once its tokens have expired: they are refused,
	// the new ones still pass.
	os.Remove(filepath.Join(dir, "2026-01.pem"))
	reload()
	if got := served(); got != "2026-06" {
		t.Fatalf("JWKS served after retiring the old key: %s", got)
	}
	if st, _ := e.apiMe(oldTok); st != 401 {
		t.Fatalf("token of the retired key: %d", st)
	}
	if st, _ := e.apiMe(newTok); st != 200 {
		t.Fatalf("token of the new key after retiring the old: %d", st)
	}
	if _, err := remote.Verify(ctx, newTok); err != nil {
		t.Fatal(err)
	}
}
