package clilogin

// a refresh the server answered is never lost, and a login the
// server ended is marked so and never refreshed again.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// TestRefreshKeysUnavailableKeepsRotatedToken: the JWKS answers 503 once
// right after the server rotated the refresh token. The new refresh token
// is stored all the same; the next run verifies the new access token and
// uses it, and never presents the spent refresh token.
func TestRefreshKeysUnavailableKeepsRotatedToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		elapsed time.Duration // since login: in the window, or expired
	}{
		{"old token still valid", 50 * time.Minute},
		{"old token expired", 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var hooked []error
			h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
			first := h.login()
			h.clock.Add(tc.elapsed)
			h.as.JWKSFail.Store(1)

			tok, err := h.client().Token(t.Context())
			if tc.elapsed < time.Hour {
				if err != nil || tok.AccessToken != first.AccessToken.Reveal() || len(hooked) != 1 {
					t.Fatalf("Token = %v, %v (hooked %v); want the old, still valid token and one report", tok, err, hooked)
				}
				err = hooked[0]
			} else if err == nil || errors.Is(err, ErrLoginRequired) {
				t.Fatalf("Token with the keys unavailable and the old token expired = %v; want an error that keeps the login", err)
			}
			if !strings.Contains(Message(err), h.as.Issuer+"/jwks") {
				t.Errorf("the report does not name the key set: %q", Message(err))
			}
			stored := h.stored()
			if stored.RefreshToken == first.RefreshToken || !h.as.RefreshTokenValid(stored.RefreshToken.Reveal()) {
				t.Fatal("the rotated refresh token was not stored: the login is lost")
			}
			if stored.Pending == nil {
				t.Fatal("the unverified access token was not kept as pending")
			}

			// The next run (a new process): the keys answer again.
			tok, err = h.client().Token(t.Context())
			if err != nil || tok.AccessToken != stored.Pending.AccessToken.Reveal() {
				t.Fatalf("next Token = %v, %v; want the verified pending token", tok, err)
			}
			if n := h.as.RefreshAttempts.Load(); n != 1 {
				t.Errorf("%d refresh requests; want 1 (the pending token is verified, not refreshed again)", n)
			}
			if after := h.stored(); after.Pending != nil || after.AccessToken.Reveal() != tok.AccessToken || after.RefreshToken != stored.RefreshToken {
				t.Error("the verified token was not stored as the login's token")
			}
		})
	}
}

// TestRefreshPendingInvalidRefreshesWithNewToken: a pending token that
// fails verification for good (here: it expired meanwhile) is dropped and
// the login refreshes with the refresh token that came with it.
func TestRefreshPendingInvalidRefreshesWithNewToken(t *testing.T) {
	h := newHarness(t)
	first := h.login()
	h.clock.Add(50 * time.Minute)
	h.as.JWKSFail.Store(1)
	if _, err := h.client().Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	pending := h.stored()
	h.clock.Add(3 * time.Hour) // the pending token expired too
	tok, err := h.client().Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if tok.AccessToken == first.AccessToken.Reveal() || tok.AccessToken == pending.Pending.AccessToken.Reveal() {
		t.Error("served an old token")
	}
	if n := h.as.RefreshAttempts.Load(); n != 2 {
		t.Errorf("%d refresh requests; want 2", n)
	}
	if !h.as.RefreshTokenValid(h.stored().RefreshToken.Reveal()) {
		t.Error("the stored refresh token is not the live one")
	}
}

// TestRefreshExpiresInForms: every expires_in real servers send, at login
// and at refresh, is harmless; the JWT's exp decides.
func TestRefreshExpiresInForms(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		omit bool
	}{
		{"float", 3600.5, false},
		{"garbage string", "abc", false},
		{"exponent", 1e3, false},
		{"string with a space", "3600 ", false},
		{"numeric string", "3600", false},
		{"negative", -5, false},
		{"null", nil, false},
		{"object", map[string]int{"s": 1}, false},
		{"missing", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.as.ExpiresIn, h.as.OmitExpiresIn = tc.v, tc.omit
			if tc.v == nil && !tc.omit {
				h.as.ExpiresIn = jsonNull{}
			}
			first := h.login()
			if want := h.clock.Now().Add(time.Hour); !first.Expiry.Equal(want.Truncate(time.Second)) && !first.Expiry.Equal(want) {
				t.Errorf("expiry = %v; want the token's exp %v", first.Expiry, want)
			}
			h.clock.Add(50 * time.Minute)
			tok, err := h.client().Token(t.Context())
			if err != nil || tok.AccessToken == first.AccessToken.Reveal() {
				t.Fatalf("refresh: %v (refreshed: %v)", err, err == nil && tok.AccessToken != first.AccessToken.Reveal())
			}
			if st := h.stored(); st.Pending != nil || !h.as.RefreshTokenValid(st.RefreshToken.Reveal()) {
				t.Error("the refreshed login was not stored")
			}
		})
	}
}

// jsonNull marshals as JSON null.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func TestParseExpiresIn(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`3600`: time.Hour, `3600.5`: time.Hour + 500*time.Millisecond, `1e3`: 1000 * time.Second,
		`"3600 "`: time.Hour, `" 60"`: time.Minute, `"abc"`: 0, `null`: 0, ``: 0, `-1`: 0, `0`: 0,
		`1e300`: 0, `"NaN"`: 0, `{}`: 0, `true`: 0,
	} {
		if got := parseExpiresIn([]byte(in)); got != want {
			t.Errorf("parseExpiresIn(%s) = %v; want %v", in, got, want)
		}
	}
}

// TestRefreshCanceledWhileAnswerInFlight: Ctrl+C while the server's answer
// to a refresh is on its way (it already rotated): the request finishes,
// the new refresh token is stored, and the next run works.
func TestRefreshCanceledWhileAnswerInFlight(t *testing.T) {
	h := newHarness(t)
	first := h.login()
	h.as.RefreshDelay.Store(int64(1500 * time.Millisecond))
	h.clock.Add(50 * time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for h.as.RefreshAttempts.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // the server has the request and is rotating
	}()
	_, err := h.client().Token(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Token = %v; want the cancellation reported", err)
	}
	stored := h.stored()
	if stored.RefreshToken == first.RefreshToken || !h.as.RefreshTokenValid(stored.RefreshToken.Reveal()) {
		t.Fatal("the answer that arrived after Ctrl+C was not stored: the login is lost")
	}
	h.as.RefreshDelay.Store(0)
	if tok, err := h.client().Token(t.Context()); err != nil || tok.AccessToken != stored.Pending.AccessToken.Reveal() {
		t.Fatalf("next Token: %v", err)
	}
	if n := h.as.RefreshAttempts.Load(); n != 1 {
		t.Errorf("%d refresh requests; want 1", n)
	}
}

// TestRefreshRefusedEndsLogin: invalid_grant at refresh ends the login: it
// is recorded, the spent refresh token is never sent again (not by 20
// clients queued on the lock either), Status says why, and Token names
// the command to run.
func TestRefreshRefusedEndsLogin(t *testing.T) {
	for _, tc := range []struct {
		description string
		want        EndReason
	}{
		{"the login session was revoked; sign in again", EndRevoked},
		{"the login session reached its maximum lifetime; sign in again", EndExpired},
		{"refresh token reuse detected", EndReused},
		{"the refresh token is invalid, expired, revoked or was issued to another client", EndRefused},
	} {
		t.Run(string(tc.want), func(t *testing.T) {
			h := newHarness(t)
			h.as.RefreshRefusal = tc.description
			h.login()
			h.as.mu.Lock()
			clear(h.as.refreshes) // the server ended the login
			h.as.mu.Unlock()
			h.clock.Add(50 * time.Minute) // in the window, old token still valid

			var wg sync.WaitGroup
			errs := make([]error, 20)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = h.client().Token(t.Context())
				}()
			}
			wg.Wait()
			if n := h.as.RefreshAttempts.Load(); n != 1 {
				t.Errorf("%d refresh requests with the refused token; want 1", n)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrLoginEnded) || !errors.Is(err, ErrLoginRequired) {
					t.Fatalf("Token = %v; want ErrLoginEnded and ErrLoginRequired", err)
				}
			}
			msg := Message(errs[0])
			if !strings.Contains(msg, "Run `mytool login` to sign in again.") || !strings.Contains(msg, "user-1@example.com") ||
				strings.Contains(msg, "clilogin:") {
				t.Errorf("message = %q", msg)
			}
			stored := h.stored()
			if stored.Ended == nil || stored.RefreshToken != "" || stored.AccessToken != "" || stored.Account != "user-1@example.com" {
				t.Fatalf("stored = %+v; want an ended login without secrets that says whose it was", stored)
			}
			s, err := h.client().Status(t.Context())
			if err != nil || s.Ended == nil || s.Ended.Reason != tc.want || s.Usable(h.clock.Now()) || s.Account != "user-1@example.com" {
				t.Fatalf("Status = %+v, %v; want ended (%s), not usable", s, err, tc.want)
			}
			h.checkNoSecrets("message", msg)

			// A later run does not send anything either; a new login clears it.
			if _, err := h.client().Token(t.Context()); !errors.Is(err, ErrLoginEnded) || h.as.RefreshAttempts.Load() != 1 {
				t.Errorf("a later Token: %v, %d refresh requests", err, h.as.RefreshAttempts.Load())
			}
			h.login()
			if s, err := h.client().Status(t.Context()); err != nil || s.Ended != nil {
				t.Errorf("Status after a new login = %+v, %v", s, err)
			}
		})
	}
}

// TestRefreshLostAnswerThenRefusedIsReuse: a refresh whose answer never
// came (the server may have rotated), then invalid_grant with an unclear
// description: the login ended because its token was presented twice.
func TestRefreshLostAnswerThenRefusedIsReuse(t *testing.T) {
	h := newHarness(t)
	h.as.RefreshRefusal = "the refresh token is invalid, expired, revoked or was issued to another client"
	h.login()
	h.clock.Add(50 * time.Minute)
	h.as.RefreshDelay.Store(int64(3 * time.Second))
	h.cfg.HTTPClient = newTimeoutClient(500 * time.Millisecond)
	if _, err := h.client().Token(t.Context()); err != nil {
		t.Fatalf("Token with the old token still valid: %v", err)
	}
	if h.stored().LostRefreshAt.IsZero() {
		t.Fatal("the refresh that got no answer was not recorded")
	}
	h.as.RefreshDelay.Store(0)
	h.cfg.HTTPClient = nil
	_, err := h.client().Token(t.Context())
	if !errors.Is(err, ErrLoginEnded) {
		t.Fatalf("Token = %v", err)
	}
	if s, _ := h.client().Status(t.Context()); s == nil || s.Ended == nil || s.Ended.Reason != EndReused {
		t.Errorf("Status = %+v; want ended as reused", s)
	}
}

func TestEndReason(t *testing.T) {
	for _, tc := range []struct {
		desc string
		lost bool
		want EndReason
	}{
		{"the login session was revoked; sign in again", false, EndRevoked},
		{"the login session reached its maximum lifetime; sign in again", false, EndExpired},
		{"Token has expired", false, EndExpired},
		{"refresh token already used", false, EndReused},
		{"the refresh token is invalid, expired, revoked or was issued to another client", false, EndRefused},
		{"the refresh token is invalid, expired, revoked or was issued to another client", true, EndReused},
		{"", false, EndRefused},
		{"", true, EndReused},
		{"the identity layer refused to issue a token; sign in again", false, EndRefused},
	} {
		if got := endReason(tc.desc, tc.lost); got != tc.want {
			t.Errorf("endReason(%q, %v) = %s; want %s", tc.desc, tc.lost, got, tc.want)
		}
	}
}

// TestLoginRevokesPreviousLogin: a new login over a live one (same
// profile) revokes the previous grant at the server.
func TestLoginRevokesPreviousLogin(t *testing.T) {
	h := newHarness(t)
	first := h.login()
	second := h.login()
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("the second login stored the first one's token")
	}
	if h.as.RefreshTokenValid(first.RefreshToken.Reveal()) {
		t.Error("the previous login's refresh token is still valid at the server")
	}
	if !h.as.RefreshTokenValid(second.RefreshToken.Reveal()) {
		t.Error("the new login's refresh token was revoked")
	}
	// Another profile is another login: left alone.
	h.cfg.Profile = "work"
	h.login()
	if !h.as.RefreshTokenValid(second.RefreshToken.Reveal()) {
		t.Error("a login under another profile revoked the default profile's")
	}
}

// TestTokenStoreUnreachable: a keychain that cannot be reached is never
// "not logged in": Status, Token and Logout say the store failed, and
// Logout says what may remain.
func TestTokenStoreUnreachable(t *testing.T) {
	h := newHarness(t)
	h.login()
	down := &tokenstore.KeychainError{Where: "the Secret Service on the D-Bus session bus at unix:path=/nonexistent",
		Reason: "cannot connect to the D-Bus session bus", Err: errors.New("dial unix /nonexistent: connect: no such file or directory")}
	h.cfg.Store = unreachableStore{Store: h.store, err: down}
	c := h.client()
	_, err := c.Status(t.Context())
	if !errors.Is(err, ErrStorage) || errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("Status = %v; want ErrStorage, not ErrNotLoggedIn", err)
	}
	if msg := Message(err); !strings.Contains(msg, "Cannot tell whether you are logged in") || !strings.Contains(msg, "unix:path=/nonexistent is unreachable") {
		t.Errorf("Status message = %q", msg)
	}
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrStorage) || errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("Token = %v; want ErrStorage", err)
	}
	err = c.Logout(t.Context())
	if !errors.Is(err, ErrStorage) || errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("Logout = %v; want ErrStorage", err)
	}
	if msg := Message(err); !strings.Contains(msg, "cannot be read, revoked or removed") || !strings.Contains(msg, "mytool logout") {
		t.Errorf("Logout message = %q", msg)
	}
	if len(h.as.Revoked()) != 0 {
		t.Error("revoked something it could not read")
	}
}

// unreachableStore fails every call like a keychain that cannot be reached.
type unreachableStore struct {
	tokenstore.Store
	err error
}

func (s unreachableStore) Load(context.Context, string) ([]byte, error) { return nil, s.err }
func (s unreachableStore) Save(context.Context, string, []byte) error   { return s.err }
func (s unreachableStore) Delete(context.Context, string) error         { return s.err }

func newTimeoutClient(d time.Duration) *http.Client { return &http.Client{Timeout: d} }

func keyOf(h *harness) string { return tokenstore.Key(h.cfg.Profile, h.as.Issuer, testClientID) }

func mustRecord(t *testing.T, b []byte) *tokenstore.Record {
	t.Helper()
	rec, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func saveRecord(t *testing.T, h *harness, rec *tokenstore.Record) {
	t.Helper()
	b, err := tokenstore.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Save(t.Context(), keyOf(h), b); err != nil {
		t.Fatal(err)
	}
}
