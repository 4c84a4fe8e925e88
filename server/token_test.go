package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"golang.org/x/oauth2"
)

func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	type result struct {
		status int
		code   string
	}
	exchange := func(form url.Values) result {
		st, m, h := e.postForm(server.TokenPath, form)
		if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("headers %v", h)
		}
		code, _ := m["error"].(string)
		return result{st, code}
	}
	base := func(code, verifier, redirect string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {redirect}, "client_id": {"mytool"}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(f url.Values)
		before func()
		want   result
	}{
		{"ok", func(url.Values) {}, nil, result{200, ""}},
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, nil, result{400, "invalid_grant"}},
		{"malformed verifier", func(f url.Values) { f.Set("code_verifier", "short") }, nil, result{400, "invalid_request"}},
		{"missing verifier", func(f url.Values) { f.Del("code_verifier") }, nil, result{400, "invalid_request"}},
		{"wrong redirect_uri", func(f url.Values) { f.Set("redirect_uri", f.Get("redirect_uri")+"x") }, nil, result{400, "invalid_grant"}},
		{"missing redirect_uri", func(f url.Values) { f.Del("redirect_uri") }, nil, result{400, "invalid_request"}},
		{"other registered client", func(f url.Values) { f.Set("client_id", "other") }, nil, result{400, "invalid_grant"}},
		{"unknown client", func(f url.Values) { f.Set("client_id", "nope") }, nil, result{401, "invalid_client"}},
		{"missing client", func(f url.Values) { f.Del("client_id") }, nil, result{400, "invalid_request"}},
		{"unknown code", func(f url.Values) { f.Set("code", "nope") }, nil, result{400, "invalid_grant"}},
		{"missing code", func(f url.Values) { f.Del("code") }, nil, result{400, "invalid_request"}},
		{"expired code", func(url.Values) {}, func() { e.clock.Advance(61 * time.Second) }, result{400, "invalid_grant"}},
		{"unknown grant type", func(f url.Values) { f.Set("grant_type", "password") }, nil, result{400, "unsupported_grant_type"}},
		{"missing grant type", func(f url.Values) { f.Del("grant_type") }, nil, result{400, "invalid_request"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier, redirect := e.codeFlow("mytool")
			if tc.before != nil {
				tc.before()
			}
			f := base(code, verifier, redirect)
			tc.mutate(f)
			if got := exchange(f); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("reused code", func(t *testing.T) {
		code, verifier, redirect := e.codeFlow("mytool")
		if got := exchange(base(code, verifier, redirect)); got.status != 200 {
			t.Fatalf("first use: %+v", got)
		}
		if got := exchange(base(code, verifier, redirect)); got != (result{400, "invalid_grant"}) {
			t.Fatalf("second use: %+v", got)
		}
	})
	t.Run("failed attempt burns the code", func(t *testing.T) {
		code, verifier, redirect := e.codeFlow("mytool")
		bad := base(code, oauth2.GenerateVerifier(), redirect)
		exchange(bad)
		if got := exchange(base(code, verifier, redirect)); got.code != "invalid_grant" {
			t.Fatalf("after a failed attempt: %+v", got)
		}
	})
	raw := func(method, ctype string, body []byte) result {
		req, _ := http.NewRequest(method, e.issuer+server.TokenPath, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("status %d: body is not JSON: %v", resp.StatusCode, err)
		}
		code, _ := m["error"].(string)
		return result{resp.StatusCode, code}
	}
	t.Run("GET", func(t *testing.T) {
		if got := raw("GET", "", nil); got != (result{405, "invalid_request"}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("JSON body", func(t *testing.T) {
		if got := raw("POST", "application/json", []byte(`{"grant_type":"authorization_code"}`)); got != (result{400, "invalid_request"}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		body := []byte("grant_type=authorization_code&pad=" + strings.Repeat("a", 70<<10))
		if got := raw("POST", "application/x-www-form-urlencoded", body); got != (result{413, "invalid_request"}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("duplicate parameter", func(t *testing.T) {
		if got := exchange(url.Values{"grant_type": {"refresh_token", "refresh_token"}, "client_id": {"mytool"}}); got != (result{400, "invalid_request"}) {
			t.Fatalf("%+v", got)
		}
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.login()
	st, m := e.refresh(tok.RefreshToken)
	if st != 200 || m["refresh_token"] == tok.RefreshToken || m["access_token"] == nil || m["token_type"] != "Bearer" {
		t.Fatalf("refresh: %d %v", st, m["error"])
	}
	rt2 := m["refresh_token"].(string)
	at2 := m["access_token"].(string)
	if s, _ := e.apiMe(at2); s != 200 {
		t.Fatalf("refreshed token refused: %d", s)
	}
	// The rotated-away token comes back after the grace period:
	// invalid_grant, and the session dies.
	e.clock.Advance(server.DefaultRefreshTokenReuseGrace)
	if st, m := e.refresh(tok.RefreshToken); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, m)
	}
	if st, m := e.refresh(rt2); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("current token after reuse: %d %v", st, m)
	}
	if s, h := e.apiMe(at2); s != 401 || h.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("access token of revoked session: %d", s)
	}
	// Another login session is untouched.
	other := e.login()
	if st, _ := e.refresh(other.RefreshToken); st != 200 {
		t.Fatalf("unrelated session: %d", st)
	}
	// A refresh token is bound to its client.
	third := e.login()
	st, m, _ = e.postForm(server.TokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {third.RefreshToken}, "client_id": {"other"}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("other client: %d %v", st, m)
	}
}

// x/oauth2's own TokenSource refreshes against the endpoint.
func TestRefreshWithOAuth2TokenSource(t *testing.T) {
	e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) { c.Lifetime = time.Hour }})
	tok := e.login()
	tok.Expiry = time.Now().Add(-time.Minute) // x/oauth2 uses the real clock
	nt, err := e.oauthConfig("mytool").TokenSource(context.Background(), tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if nt.AccessToken == tok.AccessToken || nt.RefreshToken == tok.RefreshToken {
		t.Fatal("token not refreshed")
	}
}

func TestRefreshAbsoluteCap(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *server.Config) { c.RefreshTokenMaxLifetime = 48 * time.Hour }})
	tok := e.login()
	e.clock.Advance(47 * time.Hour)
	st, m := e.refresh(tok.RefreshToken)
	if st != 200 {
		t.Fatalf("before the cap: %d %v", st, m)
	}
	e.clock.Advance(time.Hour)
	if st, m := e.refresh(m["refresh_token"].(string)); st != 400 || m["error"] != "invalid_grant" || !strings.Contains(m["error_description"].(string), "maximum lifetime") {
		t.Fatalf("at the cap: %d %v", st, m)
	}
}

func TestCanRefreshRefusal(t *testing.T) {
	deleted := errors.New("user deleted")
	var refuse bool
	e := newEnv(t, envOpts{selfSigned: func(c *server.SelfSignedConfig) {
		c.CanRefresh = func(ctx context.Context, id server.Identity) error {
			if refuse && id.Subject == server.DevSubject("ada@example.com") {
				return deleted
			}
			return nil
		}
	}})
	tok := e.login()
	st, m := e.refresh(tok.RefreshToken)
	if st != 200 {
		t.Fatalf("allowed refresh: %d %v", st, m)
	}
	refuse = true
	if st, m := e.refresh(m["refresh_token"].(string)); st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("refused refresh: %d %v", st, m)
	}
	_, err := e.minter.Mint(context.Background(), server.Grant{Identity: server.Identity{Subject: server.DevSubject("ada@example.com")}, Refresh: true})
	if !errors.Is(err, server.ErrRefreshRefused) || !errors.Is(err, deleted) {
		t.Fatalf("Mint error %v", err)
	}
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, envOpts{})
	revoke := func(form url.Values) (int, map[string]any) {
		st, m, _ := e.postForm(server.RevokePath, form)
		return st, m
	}
	t.Run("refresh token ends the session", func(t *testing.T) {
		tok := e.login()
		if st, _ := revoke(url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {"mytool"}}); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		if st, m := e.refresh(tok.RefreshToken); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("refresh after revoke: %d %v", st, m)
		}
		if st, _ := e.apiMe(tok.AccessToken); st != 401 {
			t.Fatalf("access token after revoke: %d", st)
		}
	})
	t.Run("access token ends the session", func(t *testing.T) {
		tok := e.login()
		if st, _ := revoke(url.Values{"token": {tok.AccessToken}}); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		if st, _ := e.refresh(tok.RefreshToken); st != 400 {
			t.Fatalf("refresh after access-token revoke: %d", st)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		if st, _ := revoke(url.Values{"token": {"whatever"}}); st != 200 {
			t.Fatalf("unknown token: %d", st)
		}
	})
	t.Run("another client's token is kept", func(t *testing.T) {
		tok := e.login()
		if st, _ := revoke(url.Values{"token": {tok.RefreshToken}, "client_id": {"other"}}); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		if st, _ := e.refresh(tok.RefreshToken); st != 200 {
			t.Fatalf("foreign revoke took effect: %d", st)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if st, m := revoke(url.Values{}); st != 400 || m["error"] != "invalid_request" {
			t.Fatalf("missing token: %d %v", st, m)
		}
		if st, m := revoke(url.Values{"token": {"x"}, "client_id": {"nope"}}); st != 401 || m["error"] != "invalid_client" {
			t.Fatalf("unknown client: %d %v", st, m)
		}
	})
}

func TestRevokeSubjectAndIdentitySession(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.login()
	e.clock.Advance(time.Second)
	if err := e.h.RevokeSubject(context.Background(), server.DevSubject("ada@example.com")); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.refresh(tok.RefreshToken); st != 400 {
		t.Fatalf("refresh after RevokeSubject: %d", st)
	}
	if st, _ := e.apiMe(tok.AccessToken); st != 401 {
		t.Fatalf("access token after RevokeSubject: %d", st)
	}
	// Signing in again afterwards works.
	e.clock.Advance(time.Second)
	again := e.login()
	if st, _ := e.refresh(again.RefreshToken); st != 200 {
		t.Fatalf("new session after RevokeSubject: %d", st)
	}
	if st, _ := e.apiMe(again.AccessToken); st != 200 {
		t.Fatalf("new access token after RevokeSubject: %d", st)
	}

	// RevokeIdentitySession: sessions whose identity carries that session ID.
	e2 := newEnv(t, envOpts{configure: func(c *server.Config) {
		c.Authenticator = fixedAuth{server.Identity{Subject: "u1", SessionID: "sess_1"}}
	}})
	tok = e2.login()
	if st, _ := e2.refresh(tok.RefreshToken); st != 200 {
		t.Fatalf("before: %d", st)
	}
	tok2 := e2.login()
	if err := e2.h.RevokeIdentitySession(context.Background(), "sess_1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e2.refresh(tok2.RefreshToken); st != 400 {
		t.Fatalf("refresh after RevokeIdentitySession: %d", st)
	}
}

// fixedAuth signs everyone in as one identity.
type fixedAuth struct{ id server.Identity }

func (f fixedAuth) Authenticate(http.ResponseWriter, *http.Request, server.SignInPrompt) (*server.Identity, error) {
	id := f.id
	return &id, nil
}

// Concurrent uses of one refresh token: one rotates it, one more is taken
// for the retry of a lost response and gets the same successor, and the
// others are reuse, which ends the session (clients must serialize
// refreshes).
func TestConcurrentRefresh(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.login()
	var mu sync.Mutex
	var rts []string
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			st, m := e.refresh(tok.RefreshToken)
			mu.Lock()
			defer mu.Unlock()
			statuses[st]++
			if rt, ok := m["refresh_token"].(string); ok {
				rts = append(rts, rt)
			}
		})
	}
	wg.Wait()
	if statuses[200] != 2 || statuses[400] != 2 || len(rts) != 2 || rts[0] != rts[1] {
		t.Fatalf("statuses %v, %d refresh tokens", statuses, len(rts))
	}
	if st, _ := e.refresh(rts[0]); st != 400 {
		t.Fatalf("winner's token after reuse: %d", st)
	}
}

// A revocation between consent and the code exchange (a deleted user, an
// ended identity session) must stop the exchange: the token it would mint
// carries a later "iat" and would pass RequireToken's subject check.
func TestCodeExchangeAfterRevocation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		revoke func(h *server.Handler) error
	}{
		{"subject", func(h *server.Handler) error { return h.RevokeSubject(context.Background(), "u1") }},
		{"identity session", func(h *server.Handler) error { return h.RevokeIdentitySession(context.Background(), "sess_1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{configure: func(c *server.Config) {
				c.Authenticator = fixedAuth{server.Identity{Subject: "u1", SessionID: "sess_1"}}
			}})
			code, verifier, redirect := e.codeFlow("mytool")
			e.clock.Advance(time.Second)
			if err := tc.revoke(e.h); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Second)
			st, m, _ := e.postForm(server.TokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"code_verifier": {verifier}, "redirect_uri": {redirect}, "client_id": {"mytool"}})
			if st != 400 || m["error"] != "invalid_grant" {
				t.Fatalf("exchange after revocation: %d %v", st, m["error"])
			}
		})
	}
}

// RFC 7235 §3.1: a 401 carries WWW-Authenticate, also when the unknown
// client_id came in the form rather than in an Authorization header.
func TestInvalidClientHasWWWAuthenticate(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, path := range []string{server.TokenPath, server.RevokePath} {
		st, m, h := e.postForm(path, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "token": {"x"}, "client_id": {"nope"}})
		if st != 401 || m["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: %d %v WWW-Authenticate=%q", path, st, m, h.Get("WWW-Authenticate"))
		}
	}
}

// RFC 6749 §4.1.2.1 and §5.2: error_description is printable ASCII without
// '"' and '\', even when the error is about a parameter the request named.
func TestErrorDescriptionCharset(t *testing.T) {
	e := newEnv(t, envOpts{})
	const name = "x\"\\\x1b[31m\u00e9"
	allowed := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
		return s != ""
	}
	resp, err := noRedirects().Get(authURL(e, map[string][]string{name: {"1", "2"}}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if q := loc.Query(); q.Get("error") != "invalid_request" || !allowed(q.Get("error_description")) {
		t.Fatalf("authorize: %d %q", resp.StatusCode, q.Get("error_description"))
	}
	st, m, _ := e.postForm(server.TokenPath, url.Values{"grant_type": {"refresh_token"}, name: {"1", "2"}})
	if desc, _ := m["error_description"].(string); st != 400 || m["error"] != "invalid_request" || !allowed(desc) {
		t.Fatalf("token: %d %q", st, desc)
	}
}
