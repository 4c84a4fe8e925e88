package clerk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/clerk/clerk-sdk-go/v2/session"

	"github.com/keyloop/keyloop/server"
)

// Mint implements server.Minter: it mints the configured JWT template for
// the grant's Clerk session (g.Identity.SessionID) with the configured
// lifetime, using session.CreateToken (expires_in_seconds overrides the
// template's own lifetime, which can therefore stay at Clerk's minimum).
//
// On a refresh it first checks with session.Get that the Clerk session is
// still active and with user.Get that the user is neither banned nor
// locked; when not (ended, revoked, removed, expired, abandoned, replaced,
// pending, banned, locked) or the session no longer exists, the error wraps
// server.ErrRefreshRefused and ErrSessionInactive (with the status) or
// ErrUserBlocked, and the handler answers invalid_grant.
//
// It then checks the token Clerk returned — signed with the instance key
// (not the template's custom signing key), issued by FrontendAPIURL,
// carrying TemplateClaim with the template's name, Audience when set, no
// "azp", and the session's actor when impersonated — and fails with ErrSetup
// saying what to change otherwise, so a misconfigured template never
// reaches a CLI. Other Clerk failures wrap ErrClerkAPI.
func (p *Provider) Mint(ctx context.Context, g server.Grant) (*server.MintedToken, error) {
	sid := g.Identity.SessionID
	if sid == "" {
		return nil, fmt.Errorf("%w: the identity has no Clerk session ID", ErrMissingClaim)
	}
	if g.Refresh {
		if _, err := p.activeSession(ctx, sid); err != nil {
			return nil, refreshError(err)
		}
		u, err := p.users.Get(ctx, g.Identity.Subject)
		if err != nil {
			return nil, refreshError(apiError("user.Get", err))
		}
		if u.Banned || u.Locked {
			return nil, fmt.Errorf("%w: %w", server.ErrRefreshRefused, blockedError(u))
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
	exp, err := p.checkMinted(ctx, tok.JWT, g.Identity.Claims)
	if err != nil {
		return nil, err
	}
	return &server.MintedToken{AccessToken: tok.JWT, Expiry: exp}, nil
}

// checkMinted verifies a token Clerk just minted from the template and
// returns its expiry; errors wrap ErrSetup and name the fix.
func (p *Provider) checkMinted(ctx context.Context, token string, identityClaims map[string]any) (time.Time, error) {
	header, err := jwtHeader(token)
	if err != nil {
		return time.Time{}, &APIError{Op: "session.CreateToken", Err: errors.New("malformed token returned")}
	}
	tmpl := p.cfg.JWTTemplate
	kid, _ := header["kid"].(string)
	key, err := p.keys.get(ctx, kid)
	if errors.Is(err, ErrSessionToken) {
		return time.Time{}, fmt.Errorf("%w: the JWT template %q signs with a key that is not in the instance's JWKS: turn off its custom signing key (Dashboard → JWT templates → %s)", ErrSetup, tmpl, tmpl)
	}
	if err != nil {
		return time.Time{}, err
	}
	verified, err := jwt.Verify(ctx, &jwt.VerifyParams{
		Token: token, JWK: key, Clock: clock{p.cfg.Now}, Leeway: p.cfg.Leeway, IsSatellite: true,
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: the token Clerk minted from template %q does not verify: %w", ErrSetup, tmpl, sanitize(err))
	}
	claims, err := jwtClaims(token)
	if err != nil {
		return time.Time{}, &APIError{Op: "session.CreateToken", Err: errors.New("malformed token returned")}
	}
	if verified.Issuer != p.cfg.FrontendAPIURL {
		return time.Time{}, fmt.Errorf("%w: Clerk minted the token with iss %q but clients are told to expect %q: set clerk.Config.FrontendAPIURL (CLERK_FRONTEND_API_URL) to %q", ErrSetup, verified.Issuer, p.cfg.FrontendAPIURL, verified.Issuer)
	}
	if verified.Expiry == nil {
		return time.Time{}, fmt.Errorf("%w: the token Clerk minted from template %q has no exp", ErrSetup, tmpl)
	}
	if v, _ := claims[TemplateClaim].(string); v != tmpl {
		return time.Time{}, fmt.Errorf(`%w: add the claim "%s": "%s" to the JWT template %q (Dashboard → JWT templates → %s → Claims); the bearer middleware accepts only tokens that carry it`, ErrSetup, TemplateClaim, tmpl, tmpl, tmpl)
	}
	if p.cfg.Audience != "" && !slices.Contains(audience(claims), p.cfg.Audience) {
		return time.Time{}, fmt.Errorf(`%w: add "aud": %q to the JWT template %q, or change clerk.Config.Audience (CLERK_AUDIENCE)`, ErrSetup, p.cfg.Audience, tmpl)
	}
	if _, ok := claims["azp"]; ok {
		return time.Time{}, fmt.Errorf("%w: Clerk put azp in a Backend API token of template %q; the bearer middleware refuses such tokens as browser-minted", ErrSetup, tmpl)
	}
	if want, _ := identityClaims["act"].(map[string]any); want != nil {
		got := actor(claims)
		if got == nil || got["sub"] != want["sub"] {
			return time.Time{}, fmt.Errorf(`%w: the session is impersonated but the JWT template %q does not pass the actor on: add "act": "{{session.actor}}" to its claims, or leave clerk.Config.AllowImpersonation off`, ErrSetup, tmpl)
		}
	}
	return time.Unix(*verified.Expiry, 0), nil
}

// audience returns the "aud" claim as a list.
func audience(claims map[string]any) []string {
	switch a := claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
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
// whose keys are at the Frontend API's /.well-known/jwks.json (through the
// proxy when there is one) and whose issuer is FrontendAPIURL.
func (p *Provider) KeyInfo() server.KeyInfo {
	return server.KeyInfo{
		JWKSURI:     p.cfg.FrontendAPIURL + "/.well-known/jwks.json",
		TokenIssuer: p.cfg.FrontendAPIURL,
		Audience:    p.cfg.Audience,
	}
}

// CheckAccessToken is called by the server's bearer middleware after it has
// verified a token's signature, issuer, audience and times. It accepts only
// what Mint hands out — a Backend API-minted token of the configured JWT
// template — and refuses, with errors wrapping ErrTemplateToken:
//
//   - other kinds of Clerk token, told apart as Clerk's backend SDK does
//     (tokenKind): session tokens, M2M tokens, OAuth access tokens ("typ"
//     "at+jwt"), and any "cat" header but the template or ignore category;
//   - template tokens minted by a browser through the Frontend API
//     (Clerk.session.getToken({template})): they carry "azp" and the
//     template's own lifetime, and skipped keyloop's consent. Clerk leaves
//     "azp" out when the Frontend API request has no Origin (a native app,
//     a script outside a browser); such a token cannot be told from Mint's
//     but for its lifetime (exp - iat): the template's own, which
//     CheckSetup keeps at most MaxTemplateLifetime, so while TokenLifetime
//     is longer, a token living at most MaxTemplateLifetime is refused;
//   - tokens of the instance's other JWT templates: TemplateClaim must be
//     the configured template's name;
//   - tokens with an "act" claim (impersonation) unless
//     Config.AllowImpersonation.
//
// A token without "exp" wraps ErrMissingClaim.
func (p *Provider) CheckAccessToken(header, claims map[string]any) error {
	if typ, ok := header["typ"]; ok && typ != "JWT" {
		return fmt.Errorf("%w: the typ header is not JWT (an OAuth access token is at+jwt)", ErrTemplateToken)
	}
	if kind, foreign := foreignCategory(header, TemplateTokenCategory); foreign {
		return fmt.Errorf("%w: the cat header marks a %s, not a JWT template token", ErrTemplateToken, kind)
	}
	if kind := tokenKind(header, claims); kind != kindTemplate {
		return fmt.Errorf("%w: a Clerk %s is not an access token", ErrTemplateToken, kind)
	}
	if _, ok := claims["azp"]; ok {
		return fmt.Errorf("%w: a JWT template token minted by a browser (it carries azp) is not an access token", ErrTemplateToken)
	}
	if life, ok := lifetime(claims); ok && p.cfg.TokenLifetime > MaxTemplateLifetime && life <= MaxTemplateLifetime {
		return fmt.Errorf("%w: a JWT template token that lives %v, the template's own lifetime, was minted through the Frontend API, not by keyloop (%v)", ErrTemplateToken, life, p.cfg.TokenLifetime)
	}
	if v, _ := claims[TemplateClaim].(string); v != p.cfg.JWTTemplate {
		return fmt.Errorf("%w: not a token of the JWT template %q (no matching %s claim)", ErrTemplateToken, p.cfg.JWTTemplate, TemplateClaim)
	}
	if actor(claims) != nil && !p.cfg.AllowImpersonation {
		return fmt.Errorf("%w: a token of an impersonated session (act claim)", ErrImpersonation)
	}
	if _, ok := claims["exp"]; !ok {
		return fmt.Errorf("%w: no exp", ErrMissingClaim)
	}
	return nil
}

// lifetime returns exp - iat, when both are numbers.
func lifetime(claims map[string]any) (time.Duration, bool) {
	num := func(k string) (float64, bool) {
		switch v := claims[k].(type) {
		case float64:
			return v, true
		case json.Number:
			f, err := v.Float64()
			return f, err == nil
		}
		return 0, false
	}
	exp, ok1 := num("exp")
	iat, ok2 := num("iat")
	if !ok1 || !ok2 {
		return 0, false
	}
	return time.Duration(exp-iat) * time.Second, true
}

// jwtClaims decodes a compact JWT's claims without verifying them; callers
// verify the signature first.
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
