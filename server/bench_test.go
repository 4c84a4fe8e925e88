package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"golang.org/x/oauth2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/keyloop/keyloop/server"
)

// BenchmarkVerify measures Verifier.Verify (EdDSA, keyfunc, all claim checks,
// no StateStore) and reports its cost relative to a bare golang-jwt parse
// with the key in hand, measured in the same run ("x-baseline").
func BenchmarkVerify(b *testing.B) {
	key, _ := server.GenerateKey()
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: key})
	tok, _ := m.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: "u"}, LoginSessionID: "s"})
	jwks, _ := m.JWKS()
	v, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", JWKS: jwks})
	pub := key.Public().(ed25519.PublicKey)
	ctx := context.Background()
	withBaseline(b, func(b *testing.B) {
		for b.Loop() {
			if _, err := jwt.Parse(tok.AccessToken, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
				b.Fatal(err)
			}
		}
	}, func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyKeySet measures Verify against a live KeySet (what the
// Handler's RequireToken uses, so that key rotation counts at once) relative
// to a Verifier with the same keys as a static JWKS, measured in the same
// run.
func BenchmarkVerifyKeySet(b *testing.B) {
	key, _ := server.GenerateKey()
	ks, _ := server.NewKeySet([]server.SigningKey{{ID: "old", Key: key}, {ID: "new", Key: key}}, "new")
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Keys: ks})
	tok, _ := m.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: "u"}, LoginSessionID: "s"})
	jwks, _ := ks.JWKS()
	static, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", JWKS: jwks})
	live, _ := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", KeySet: ks})
	ctx := context.Background()
	run := func(v *server.Verifier) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	withBaseline(b, run(static), run(live))
}

// withBaseline runs baseline and then measured as sub-benchmarks "baseline"
// and "measured"; the latter also reports its ns/op divided by the
// baseline's as "x-baseline".
func withBaseline(b *testing.B, baseline, measured func(*testing.B)) {
	var baseNs float64
	b.Run("baseline", func(b *testing.B) {
		baseline(b)
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("measured", func(b *testing.B) {
		measured(b)
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x-baseline")
		}
	})
}

// BenchmarkRefreshGrant measures a full refresh_token grant through the
// handler (form parsing, Get, revocation checks, mint, two Puts, the
// grace-period marker sealed and swapped in with CompareAndSwap) and
// reports it relative to SelfSigned.Mint alone, measured in the same run.
func BenchmarkRefreshGrant(b *testing.B) {
	key, _ := server.GenerateKey()
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "http://127.0.0.1:1", Key: key})
	h, err := server.New(server.Config{Issuer: "http://127.0.0.1:1", Clients: []server.Client{{ID: "mytool"}},
		Authenticator: fixedAuth{server.Identity{Subject: "u"}}, Minter: m})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	g := server.Grant{Identity: server.Identity{Subject: "u"}, ClientID: "mytool", LoginSessionID: "s", Refresh: true}
	rt := benchLogin(b, h)
	withBaseline(b, func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Mint(ctx, g); err != nil {
				b.Fatal(err)
			}
		}
	}, func(b *testing.B) {
		for b.Loop() {
			req := httptest.NewRequest("POST", server.TokenPath, strings.NewReader(url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var resp struct {
				RefreshToken string `json:"refresh_token"`
			}
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &resp) != nil {
				b.Fatalf("refresh: %d %s", w.Code, w.Body)
			}
			rt = resp.RefreshToken
		}
	})
}

// benchLogin drives one login through the handler in memory and returns the
// refresh token.
func benchLogin(b *testing.B, h http.Handler) string {
	const verifier = "0123456789012345678901234567890123456789abc"
	redirect := "http://127.0.0.1:9/cb"
	do := func(req *http.Request, cookies []*http.Cookie) *httptest.ResponseRecorder {
		for _, c := range cookies {
			req.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	q := url.Values{"client_id": {"mytool"}, "redirect_uri": {redirect}, "response_type": {"code"}, "state": {"s"},
		"code_challenge_method": {"S256"}, "code_challenge": {s256(verifier)}}
	w := do(httptest.NewRequest("GET", server.AuthorizePath+"?"+q.Encode(), nil), nil)
	cookies := w.Result().Cookies()
	signin := w.Header().Get("Location")
	w = do(httptest.NewRequest("GET", signin, nil), cookies)
	csrf := csrfRE.FindStringSubmatch(w.Body.String())[1]
	req := httptest.NewRequest("POST", signin, strings.NewReader(url.Values{"csrf_token": {csrf}, "decision": {"authorize"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = do(req, cookies)
	loc, _ := url.Parse(w.Header().Get("Location"))
	req = httptest.NewRequest("POST", server.TokenPath, strings.NewReader(url.Values{"grant_type": {"authorization_code"},
		"code": {loc.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {redirect}, "client_id": {"mytool"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = do(req, nil)
	var resp struct {
		RefreshToken string `json:"refresh_token"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &resp) != nil {
		b.Fatalf("login: %d %s", w.Code, w.Body)
	}
	return resp.RefreshToken
}

func s256(v string) string { return oauth2.S256ChallengeFromVerifier(v) }

// nopWriter is a ResponseWriter that keeps nothing.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkRequireToken measures the bearer middleware (header parsing,
// Verify with the revocation checks in an in-memory StateStore, the claims
// put in the request context) around a handler that does nothing, and
// reports it relative to Verifier.Verify of the same token with the same
// store alone ("x-baseline"), measured in the same run.
func BenchmarkRequireToken(b *testing.B) {
	key, _ := server.GenerateKey()
	m, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: "https://i", Key: key})
	tok, _ := m.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: "u", SessionID: "idp-s"}, ClientID: "mytool", LoginSessionID: "s"})
	jwks, _ := m.JWKS()
	v, err := server.NewVerifier(server.VerifierConfig{Issuer: "https://i", JWKS: jwks, State: server.NewMemoryStateStore()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ok := false
	mw := v.RequireToken(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ok = true }))
	req := httptest.NewRequest("GET", "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	w := &nopWriter{h: http.Header{}}
	withBaseline(b, func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
				b.Fatal(err)
			}
		}
	}, func(b *testing.B) {
		for b.Loop() {
			ok = false
			mw.ServeHTTP(w, req)
			if !ok {
				b.Fatal("RequireToken refused the token")
			}
		}
	})
}
