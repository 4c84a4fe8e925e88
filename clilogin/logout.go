package clilogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// revokeTimeout bounds the revocation requests of a Logout.
const revokeTimeout = 5 * time.Second

// Logout revokes the token at the server (best effort, bounded) and deletes
// the stored entry.
//
// It revokes the refresh token (which ends the login session at the server)
// and then the access token at the RFC 7009 revocation endpoint, within 5
// seconds at most. The stored login is deleted either way. When revocation
// failed (the server is down, or refused) but the local delete succeeded,
// the error wraps ErrRevocationFailed: the user is logged out on this
// machine, and the old token stays valid at the server until it expires.
// When the server has no revocation endpoint (GitHub, Entra ID; see
// Endpoints.Revocation), it wraps ErrRevocationUnsupported instead, and
// its message says the same and where else the grant can be ended.
//
// When the store fails (a keychain that cannot be reached), Logout still
// removes what it can and revokes what it could read, and then returns an
// error wrapping ErrStorage that says what may remain where. ErrNotLoggedIn
// when no login is stored; ErrTokenFromEnv when the TokenEnv override is
// set (nothing is touched).
func (c *Client) Logout(ctx context.Context) error {
	if c.envToken() != "" {
		return &userError{
			msg: fmt.Sprintf("clilogin: %s is set, so %s keeps no login to remove; unset %s in your environment",
				c.cfg.TokenEnv, c.cfg.AppName, c.cfg.TokenEnv),
			user: fmt.Sprintf("%s is set, so %s uses that token and keeps no login to remove. Unset %s in your environment.",
				c.cfg.TokenEnv, c.cfg.AppName, c.cfg.TokenEnv),
			errs: []error{ErrTokenFromEnv},
		}
	}
	st, err := c.storeFor()
	if err != nil {
		return err
	}
	// The lock only keeps a refresh from writing the login back meanwhile;
	// a store that cannot give one (a read-only directory) must not keep
	// the user from logging out.
	unlock, err := c.lock(ctx, st)
	switch {
	case err == nil:
		defer unlock()
	case ctx.Err() != nil || !errors.Is(err, ErrStorage):
		return err
	}
	rec, loadErr := c.load(ctx, st)
	if errors.Is(loadErr, ErrNotLoggedIn) {
		return &userError{msg: "clilogin: not logged in to " + c.cfg.Issuer,
			user: "You are not logged in to " + c.cfg.Issuer + "; there is nothing to remove.", errs: []error{ErrNotLoggedIn}}
	}
	if loadErr != nil && !errors.Is(loadErr, tokenstore.ErrCorrupt) && !errors.Is(loadErr, ErrStorage) {
		return loadErr
	}
	loc := c.locate(ctx, st)
	var revErr error
	if rec != nil && rec.Ended == nil {
		revErr = c.revoke(ctx, rec)
	}
	delErr := st.Delete(ctx, c.key)
	c.mu.Lock()
	c.cached, c.unsaved = nil, nil
	c.mu.Unlock()
	switch {
	case delErr != nil || errors.Is(loadErr, ErrStorage):
		return c.logoutIncomplete(rec, loc, loadErr, delErr, revErr)
	case errors.Is(revErr, ErrRevocationUnsupported):
		return &userError{
			msg: fmt.Sprintf("clilogin: logged out on this machine; %s has no revocation endpoint, so its tokens stay valid until they expire", rec.Issuer),
			user: fmt.Sprintf("Logged out on this machine. %s offers no way for %s to revoke the token (no revocation endpoint), so it stays valid there until it expires; "+
				"to end it sooner, remove %s's access in your account settings at %s.", rec.Issuer, c.cfg.AppName, c.cfg.AppName, hostOf(rec.Issuer)),
			errs: []error{ErrRevocationUnsupported},
		}
	case revErr != nil:
		return &userError{
			msg: "clilogin: logged out on this machine, but the server could not revoke the token (it stays valid until it expires): " +
				stripPrefixes(revErr.Error()),
			user: "Logged out on this machine, but the server could not revoke the token: " + Message(revErr) +
				" It stays valid at the server until it expires.",
			errs: []error{ErrRevocationFailed, revErr},
		}
	}
	return nil
}

// logoutIncomplete says what a Logout whose store failed did and what may
// remain where.
func (c *Client) logoutIncomplete(rec *tokenstore.Record, loc tokenstore.Location, loadErr, delErr, revErr error) error {
	storeErr := delErr
	if storeErr == nil {
		storeErr = loadErr
	}
	var b strings.Builder
	switch {
	case rec != nil && delErr != nil && loc.Kind == tokenstore.KindFile:
		fmt.Fprintf(&b, "Removed the login from %s, but %s", loc.Path, describeStoreErr(storeErr))
		b.WriteString(" A login stored there may remain.")
	case rec == nil:
		fmt.Fprintf(&b, "Could not log out: the stored login cannot be read, revoked or removed. %s", upperFirst(describeStoreErr(storeErr)))
	default:
		fmt.Fprintf(&b, "Could not remove the stored login: %s", describeStoreErr(storeErr))
	}
	switch {
	case rec != nil && rec.Ended == nil && revErr == nil:
		b.WriteString(" The login was revoked at the server.")
	case errors.Is(revErr, ErrRevocationUnsupported):
		b.WriteString(" The server has no revocation endpoint, so the token stays valid there until it expires.")
	case revErr != nil:
		b.WriteString(" The server could not revoke it either: " + Message(revErr))
	}
	fmt.Fprintf(&b, " Run `%s logout` again once the store answers.", c.cfg.AppName)
	errs := []error{ErrStorage, storeErr}
	switch {
	case errors.Is(revErr, ErrRevocationUnsupported):
		errs = append(errs, ErrRevocationUnsupported)
	case revErr != nil:
		errs = append(errs, ErrRevocationFailed)
	}
	return &userError{msg: "clilogin: logout incomplete: " + stripPrefixes(storeErr.Error()), user: b.String(), errs: errs}
}

// ErrRevocationUnsupported is returned (wrapped) by Logout when the stored
// login was deleted but the server has no revocation endpoint (RFC 7009)
// to tell: the user is logged out on this machine, and the tokens stay
// valid at the server until they expire or are revoked there (GitHub's
// settings, a provider's own sign-out).
var ErrRevocationUnsupported = errors.New("clilogin: the server has no revocation endpoint")

// revoke asks the revocation endpoint to revoke rec's refresh and access
// tokens; ErrRevocationUnsupported when the server has none.
func (c *Client) revoke(ctx context.Context, rec *tokenstore.Record) error {
	if rec.RevocationEndpoint == "" {
		return ErrRevocationUnsupported
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	var errs []error
	if rec.RefreshToken != "" {
		if err := c.revokeOne(ctx, rec, rec.RefreshToken.Reveal(), "refresh_token"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && rec.AccessToken != "" { // a server that is down need not be asked twice
		if err := c.revokeOne(ctx, rec, rec.AccessToken.Reveal(), "access_token"); err != nil {
			var se *ServerError
			if !errors.As(err, &se) || se.Code != "unsupported_token_type" {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Client) revokeOne(ctx context.Context, rec *tokenstore.Record, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	authz := c.authenticate(form, c.recordAuth(rec.TokenAuth))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("clilogin: revocation endpoint: %v", sanitize(err.Error(), 200))
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unreachable(context.Background(), "revocation endpoint", rec.RevocationEndpoint, start, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return serverError("revocation endpoint", rec.RevocationEndpoint, resp, body)
}

// hostOf is the host of a URL, for messages; the URL itself when it has
// none.
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return raw
}
