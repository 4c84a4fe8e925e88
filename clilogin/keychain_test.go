package clilogin

import (
	"context"
	"errors"
	"testing"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

// TestDefaultStoreKeychain logs in with Config.Store nil: the token lands in
// the real (private, see scripts/with-keyring) keychain through
// tokenstore.Open, and Status, Token and Logout find it there.
func TestDefaultStoreKeychain(t *testing.T) {
	testenv.RequireKeychain(t)
	h := newHarness(t)
	h.cfg.Store = nil
	h.cfg.AppName = "keyloop-clilogin-test-" + testenv.RandomString(6)
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sess.Location.Kind != tokenstore.KindKeychain {
		t.Errorf("Login reports Location %+v, want the keychain", r.sess.Location)
	}
	c := h.client()
	s, err := c.Status(t.Context())
	if err != nil || s.Location.Kind != tokenstore.KindKeychain || s.Subject != "user-1" {
		t.Fatalf("Status = %+v, %v", s, err)
	}
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client().Status(t.Context()); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("Status after logout: %v", err)
	}
}
