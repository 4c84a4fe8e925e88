package clilogin

import (
	"context"
	"encoding/json"
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
// seconds at most; a server without a revocation endpoint is not asked. The
// stored login is deleted either way. When revocation failed (the server is
// down, or refused) but the local delete succeeded, the error wraps
// ErrRevocationFailed: the user is logged out on this machine, and the old
// token stays valid at the server until it expires. ErrNotLoggedIn when no
// login is stored; ErrTokenFromEnv when the TokenEnv override is set
// (nothing is touched).
func (c *Client) Logout(ctx context.Context) error {
	if c.envToken() != "" {
		return fmt.Errorf("%w: %s is set, so %s keeps no login to remove; unset %s in your environment",
			ErrTokenFromEnv, c.cfg.TokenEnv, c.cfg.AppName, c.cfg.TokenEnv)
	}
	st, err := c.storeFor()
	if err != nil {
		return err
	}
	unlock, err := c.lock(ctx, st)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := c.load(ctx, st)
	if err != nil && !errors.Is(err, tokenstore.ErrCorrupt) {
		return err
	}
	var revErr error
	if rec != nil {
		revErr = c.revoke(ctx, rec)
	}
	if err := st.Delete(ctx, c.key); err != nil {
		return fmt.Errorf("clilogin: delete the stored login: %w", err)
	}
	c.setCached(nil)
	if revErr != nil {
		return fmt.Errorf("clilogin: logged out on this machine, but the server could not revoke the token (it stays valid until it expires): %w: %w",
			ErrRevocationFailed, revErr)
	}
	return nil
}

// revoke asks the revocation endpoint to revoke rec's refresh and access
// tokens.
func (c *Client) revoke(ctx context.Context, rec *tokenstore.Record) error {
	if rec.RevocationEndpoint == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	var errs []error
	if rec.RefreshToken != "" {
		if err := c.revokeOne(ctx, rec, rec.RefreshToken.Reveal(), "refresh_token"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 { // a server that is down need not be asked twice
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
	form := url.Values{"token": {token}, "token_type_hint": {hint}, "client_id": {rec.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revocation endpoint: %v", sanitize(err.Error(), 200))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the revocation endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	se := &ServerError{Endpoint: "revocation", Status: resp.StatusCode}
	var body struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil && body.Error != "" {
		se.Code, se.Description = sanitizeCode(body.Error), sanitize(body.ErrorDescription, 200)
	}
	return se
}
