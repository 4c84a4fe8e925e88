package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// allowedAlgs are the JWS algorithms access tokens may be signed with. Never
// "none", never HMAC (a client only has public keys).
var allowedAlgs = []string{"EdDSA", "ES256", "RS256", "PS256"}

// expect is what a verified access token must satisfy.
type expect struct {
	jwksURI  string
	issuer   string // expected "iss"
	audience string // expected in "aud"; unchecked when empty
}

// claims are the verified facts a login keeps.
type claims struct {
	Subject  string
	Account  string
	IssuedAt time.Time // zero when the token has no "iat"
	Expiry   time.Time
	// idToken is the OpenID Connect ID token that was verified with these
	// claims; empty when none was.
	idToken string
}

type tokenClaims struct {
	jwt.RegisteredClaims
	Email             string `json:"email,omitempty"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

func (tc *tokenClaims) account() string {
	switch {
	case tc.Email != "":
		return tc.Email
	case tc.PreferredUsername != "":
		return tc.PreferredUsername
	}
	return tc.Name
}

// ErrKeysUnavailable means the server's key set (JWKS) could not be fetched,
// so a token could not be verified; the token itself may be fine.
var ErrKeysUnavailable = errors.New("clilogin: the server's keys are unavailable")

// fetchJWKS fetches the key set at uri.
func (c *Client) fetchJWKS(ctx context.Context, uri string) (keyfunc.Keyfunc, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, "JWKS endpoint", uri, start, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &userError{
			msg:  fmt.Sprintf("clilogin: fetch the server's keys: GET %s answered %s", uri, resp.Status),
			user: fmt.Sprintf("The server's key set at %s answered %s, so the token could not be checked.", uri, sanitize(resp.Status, 64)),
			errs: []error{ErrKeysUnavailable},
		}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("fetch the server's keys: %w", err)
	}
	kf, err := keyfunc.NewJWKSetJSON(json.RawMessage(raw))
	if err != nil {
		return nil, fmt.Errorf("the server's key set (%s) is malformed: %w", uri, err)
	}
	return kf, nil
}

// verifyWith checks an access token against the keys of kf and e. Its
// errors wrap ErrInvalidToken and never quote the token or its claims.
func (c *Client) verifyWith(_ context.Context, kf jwt.Keyfunc, raw string, e expect) (*claims, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(allowedAlgs),
		jwt.WithIssuer(e.issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.leeway),
		jwt.WithTimeFunc(c.now),
	}
	if e.audience != "" {
		opts = append(opts, jwt.WithAudience(e.audience))
	}
	var tc tokenClaims
	if _, err := jwt.NewParser(opts...).ParseWithClaims(raw, &tc, kf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if tc.Subject == "" {
		return nil, fmt.Errorf("%w: the token has no subject", ErrInvalidToken)
	}
	out := &claims{Subject: tc.Subject, Account: tc.account(), Expiry: tc.ExpiresAt.Time}
	if tc.IssuedAt != nil {
		out.IssuedAt = tc.IssuedAt.Time
	}
	return out, nil
}

// unverifiedClaims decodes a JWT's claims without checking anything, for
// display of a token the user supplied (TokenEnv). The result must not be
// trusted for anything else.
func unverifiedClaims(raw string) (*claims, string) {
	var tc tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &tc); err != nil {
		return &claims{}, ""
	}
	out := &claims{Subject: tc.Subject, Account: tc.account()}
	if tc.ExpiresAt != nil {
		out.Expiry = tc.ExpiresAt.Time
	}
	return out, tc.Issuer
}
