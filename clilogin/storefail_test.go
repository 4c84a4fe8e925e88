package clilogin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyloop/keyloop/tokenstore"
)

// readOnlyStore reads like the store it wraps and, once ReadOnly is set,
// refuses every write the way a file store in a read-only directory does:
// a keychain that errors on write but not on read, a config directory
// mounted read-only.
type readOnlyStore struct {
	tokenstore.Store
	ReadOnly atomic.Bool
	writes   atomic.Int32 // refused writes
}

func (s *readOnlyStore) Save(ctx context.Context, key string, v []byte) error {
	if s.ReadOnly.Load() {
		s.writes.Add(1)
		return &fs.PathError{Op: "open", Path: "/home/ada/.config/mytool/.x.token.tmp-123", Err: errors.New("read-only file system")}
	}
	return s.Store.Save(ctx, key, v)
}

// TestRefreshWithReadOnlyStore: when the store takes no writes, the refresh
// token is not spent: the server's answer could not be kept, the next
// process would present the spent token, and the server would end the
// login as reused. The still-valid token is served with one warning; once
// it expired, the error says the store cannot be written (ErrStorage) and
// the login stays valid at the server.
func TestRefreshWithReadOnlyStore(t *testing.T) {
	h := newHarness(t)
	ro := &readOnlyStore{Store: h.store}
	h.cfg.Store = ro
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	first := h.login()
	ro.ReadOnly.Store(true)

	h.clock.Add(50 * time.Minute) // in the refresh window, still valid
	for range 3 {                 // three runs of `mytool token`
		tok, err := h.client().Token(t.Context())
		if err != nil || tok.AccessToken != first.AccessToken.Reveal() {
			t.Fatalf("Token = %v, %v; want the old, still valid token", tok, err)
		}
	}
	if n := h.as.RefreshAttempts.Load(); n != 0 {
		t.Errorf("%d refresh requests with a store that takes no writes; want none (each spends the refresh token)", n)
	}
	if len(hooked) != 3 || !errors.Is(hooked[0], ErrStorage) {
		t.Fatalf("OnRefreshError got %v; want one storage report per run", hooked)
	}
	if msg := Message(hooked[0]); !strings.Contains(msg, "/home/ada/.config/mytool") || !strings.Contains(msg, "read-only file system") ||
		strings.Contains(msg, "default@") || strings.Contains(msg, "tmp-123") {
		t.Errorf("warning %q; want the directory and the cause, no internal names", msg)
	}

	h.clock.Add(2 * time.Hour) // expired
	_, err := h.client().Token(t.Context())
	if !errors.Is(err, ErrStorage) || errors.Is(err, ErrLoginRequired) || h.as.RefreshAttempts.Load() != 0 {
		t.Fatalf("Token after expiry = %v (%d refreshes); want a storage error, no refresh", err, h.as.RefreshAttempts.Load())
	}
	if msg := Message(err); !strings.Contains(msg, "could not be refreshed") || !strings.Contains(msg, "read-only file system") {
		t.Errorf("message %q", msg)
	}
	if !h.as.RefreshTokenValid(first.RefreshToken.Reveal()) {
		t.Fatal("the refresh token was spent although its answer could not be stored")
	}

	// Writable again: the login goes on.
	ro.ReadOnly.Store(false)
	if tok, err := h.client().Token(t.Context()); err != nil || tok.AccessToken == first.AccessToken.Reveal() {
		t.Fatalf("Token with the store writable again = %v, %v; want a refreshed token", tok, err)
	}
}

// lockFails is a store whose cross-process lock cannot be taken, as with a
// token directory that cannot be created (a read-only home with the login
// in the keychain).
type lockFails struct{ tokenstore.Store }

func (lockFails) Lock(context.Context, string) (func(), error) {
	return nil, fmt.Errorf("tokenstore: lock %q: %w", "default@x-1234", &fs.PathError{Op: "mkdir", Path: "/home/ada/.config/mytool", Err: errors.New("read-only file system")})
}

// TestLockUnavailable: a lock that cannot be taken is a storage failure
// (exit 2), named as such, not an error chain with internal key names; no
// refresh is made without it; the still valid token is served meanwhile;
// logout still works.
func TestLockUnavailable(t *testing.T) {
	h := newHarness(t)
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	first := h.login()
	h.cfg.Store = lockFails{h.store}

	h.clock.Add(50 * time.Minute)
	tok, err := h.client().Token(t.Context())
	if err != nil || tok.AccessToken != first.AccessToken.Reveal() || len(hooked) != 1 || !errors.Is(hooked[0], ErrStorage) {
		t.Fatalf("Token in the window = %v, %v (hooked %v); want the old token and one storage report", tok, err, hooked)
	}
	h.clock.Add(2 * time.Hour)
	_, err = h.client().Token(t.Context())
	msg := Message(err)
	if !errors.Is(err, ErrStorage) || !strings.Contains(msg, "Cannot lock the stored login") ||
		!strings.Contains(msg, "/home/ada/.config/mytool") || strings.Contains(msg, "default@") {
		t.Errorf("Token after expiry = %v: %q", err, msg)
	}
	if n := h.as.RefreshAttempts.Load(); n != 0 {
		t.Errorf("%d refreshes without the lock", n)
	}
	if err := h.client().Logout(t.Context()); err != nil || h.hasLogin() || len(h.as.Revoked()) == 0 {
		t.Errorf("Logout = %v (stored %v, revoked %v); want a logout without the lock", err, h.hasLogin(), h.as.Revoked())
	}
}

// TestFailedLoginRevokesItsGrant: when the server issued tokens but the
// login cannot be completed (the store takes no writes, the token cannot
// be verified), the tokens are revoked: no grant the user never got stays
// alive at the server for the refresh token's lifetime.
func TestFailedLoginRevokesItsGrant(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
		is    error
	}{
		{"store takes no writes", func(h *harness) {
			ro := &readOnlyStore{Store: h.store}
			ro.ReadOnly.Store(true)
			h.cfg.Store = ro
		}, ErrStorage},
		{"token not verifiable", func(h *harness) { h.as.Mint = func(c jwt.MapClaims) { c["iss"] = "https://someone-else.example" } }, ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
			if !errors.Is(r.err, tc.is) {
				t.Fatalf("Login: %v; want %v", r.err, tc.is)
			}
			if rev := h.as.Revoked(); len(rev) == 0 || rev[0] != "refresh_token" {
				t.Errorf("revoked %v; want the refresh token of the failed login", rev)
			}
		})
	}
}
