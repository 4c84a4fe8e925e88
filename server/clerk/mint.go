package clerk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/clerk/clerk-sdk-go/v2/session"

	"github.com/keyloop/keyloop/server"
)

// Mint implements server.Minter: it mints the configured JWT template for
// the grant's Clerk session (g.Identity.SessionID) with the configured
// lifetime, using session.CreateToken.
//
// On a refresh it first checks with session.Get that the Clerk session is
// still active; when it is not (ended, revoked, removed, expired) or no
// longer exists, the error wraps server.ErrRefreshRefused and
// ErrSessionInactive (with the status), and the handler answers
// invalid_grant. Other Clerk failures wrap ErrClerkAPI.
func (p *Provider) Mint(ctx context.Context, g server.Grant) (*server.MintedToken, error) {
	sid := g.Identity.SessionID
	if sid == "" {
		return nil, fmt.Errorf("%w: the identity has no Clerk session ID", ErrMissingClaim)
	}
	if g.Refresh {
		if _, err := p.activeSession(ctx, sid); err != nil {
			return nil, refreshError(err)
		}
	}
	secs := int64(p.cfg.TokenLifetime / time.Second)
	tok, err := p.sessions.CreateToken(ctx, &session.CreateTokenParams{
		ID:               sid,
		TemplateName:     p.cfg.JWTTemplate,
		ExpiresInSeconds: &secs,
	})
	if err != nil {
		// A session that ended since consent (or since the check above) is
		// refused (invalid_grant: sign in again); any other failure, such as
		// an unknown template, stays a server error.
		if _, serr := p.activeSession(ctx, sid); serr != nil {
			if rerr := refreshError(serr); errors.Is(rerr, server.ErrRefreshRefused) {
				return nil, rerr
			}
		}
		return nil, apiError("session.CreateToken", err)
	}
	if tok.JWT == "" {
		return nil, &APIError{Op: "session.CreateToken"}
	}
	claims, err := jwtClaims(tok.JWT)
	if err != nil {
		return nil, &APIError{Op: "session.CreateToken"}
	}
	exp, ok := claims["exp"].(float64)
	if !ok {
		return nil, &APIError{Op: "session.CreateToken", Err: errors.New("minted token has no exp")}
	}
	return &server.MintedToken{AccessToken: tok.JWT, Expiry: time.Unix(int64(exp), 0)}, nil
}

// refreshError wraps server.ErrRefreshRefused when Clerk says the session
// is gone or inactive; other failures (Clerk unreachable) stay retryable.
func refreshError(err error) error {
	var ae *APIError
	if errors.Is(err, ErrSessionInactive) ||
		(errors.As(err, &ae) && (ae.StatusCode == http.StatusNotFound || ae.StatusCode == http.StatusUnprocessableEntity)) {
		return fmt.Errorf("%w: %w", server.ErrRefreshRefused, err)
	}
	return err
}

// KeyInfo implements server.Minter: tokens are signed by the Clerk instance,
// whose keys are at the Frontend API's /.well-known/jwks.json and whose
// issuer is the Frontend API URL.
func (p *Provider) KeyInfo() server.KeyInfo {
	return server.KeyInfo{
		JWKSURI:     p.cfg.FrontendAPIURL + "/.well-known/jwks.json",
		TokenIssuer: p.cfg.FrontendAPIURL,
		Audience:    p.cfg.Audience,
	}
}

// CheckAccessToken is called by the server's bearer middleware after it has
// verified a token's signature, issuer and audience. It accepts only JWT
// template tokens: a "cat" header, when present, must mark a template
// token; a token without "cat" must not carry "sid" (session tokens do);
// and "exp" must be present. Errors wrap ErrTemplateToken or
// ErrMissingClaim.
func (p *Provider) CheckAccessToken(header, claims map[string]any) error {
	if cat, ok := header["cat"]; ok {
		if cat != TemplateTokenCategory {
			return fmt.Errorf("%w: the cat header does not mark a JWT template token", ErrTemplateToken)
		}
	} else if _, ok := claims["sid"]; ok {
		return fmt.Errorf("%w: a session token is not an access token", ErrTemplateToken)
	}
	if _, ok := claims["exp"]; !ok {
		return fmt.Errorf("%w: no exp", ErrMissingClaim)
	}
	return nil
}

// jwtClaims decodes a compact JWT's claims without verifying them (used on
// tokens Clerk just returned over TLS, for their exp).
func jwtClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	return decodeSegment(parts[1])
}

func decodeSegment(seg string) (map[string]any, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}
