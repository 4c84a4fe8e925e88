// Package clerk makes Clerk the identity layer and token minter of a keyloop
// backend (package server).
//
// A *Provider is both the server.Authenticator and the server.Minter:
//
//   - Authenticate renders a sign-in step that loads Clerk's browser SDK with
//     the publishable key, sends a signed-out user to Clerk's sign-in and
//     back, and posts the browser's Clerk session token; the posted token is
//     verified with the official Go SDK (github.com/clerk/clerk-sdk-go/v2)
//     plus the checks the SDK leaves out: exp and sid are required, a "cat"
//     header must mark a session token, "azp" must be an authorized party,
//     and the Clerk session must be active.
//   - Mint mints the configured Clerk JWT template (default "cli", 7 days)
//     for the Clerk session with session.CreateToken; a refresh mints again
//     only while the Clerk session is active, and is refused otherwise.
//   - KeyInfo points clients at the Clerk instance's JWKS and issuer, so a
//     CLI verifies Clerk-minted tokens with no Clerk-specific code.
//   - CheckAccessToken lets the bearer middleware accept only template
//     tokens.
//
// WebhookHandler verifies Clerk's Svix-signed webhooks and revokes keyloop
// login sessions when a user is deleted or a Clerk session ends.
//
// Package clerktest is a local fake of Clerk for tests.
package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	sdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/clerk/clerk-sdk-go/v2/session"
	"github.com/clerk/clerk-sdk-go/v2/user"

	"github.com/keyloop/keyloop/server"
)

// The "cat" (token category) header values of Clerk's JWTs.
const (
	SessionTokenCategory  = "cl_B7d4PD111AAA"
	TemplateTokenCategory = "cl_B7d4PD222AAA"
)

// Provider is Clerk as keyloop's identity layer: a server.Authenticator and
// a server.Minter. It is safe for concurrent use and keeps no per-request
// state, so several instances may run behind one load balancer.
type Provider struct {
	cfg      Config
	sessions *session.Client
	users    *user.Client
	jwks     *jwks.Client
	keys     keyCache
}

var (
	_ server.Authenticator = (*Provider)(nil)
	_ server.Minter        = (*Provider)(nil)
)

// New returns a Provider for the Clerk instance in cfg.
func New(cfg Config) (*Provider, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cc := &sdk.ClientConfig{}
	cc.Key = sdk.String(cfg.SecretKey)
	cc.HTTPClient = cfg.HTTPClient
	if cfg.APIURL != "" {
		cc.URL = sdk.String(cfg.APIURL)
	}
	p := &Provider{cfg: cfg, sessions: session.NewClient(cc), users: user.NewClient(cc), jwks: jwks.NewClient(cc)}
	p.keys.fetch = p.fetchKeys
	p.keys.now = cfg.Now
	return p, nil
}

// FrontendAPI returns the Frontend API URL the provider uses (configured or
// derived from the publishable key).
func (p *Provider) FrontendAPI() string { return p.cfg.FrontendAPIURL }

// SessionClaims are the verified claims of a Clerk session token.
type SessionClaims struct {
	// Subject is the Clerk user ID ("user_…").
	Subject string
	// SessionID is the Clerk session ID ("sess_…").
	SessionID string
	// AuthorizedParty is the origin the token was issued to, if any.
	AuthorizedParty string
	// Expiry is the token's "exp".
	Expiry time.Time
}

// VerifySessionToken verifies a Clerk session token (what the browser SDK's
// Clerk.session.getToken() returns): RS256 signature with the instance's
// key from the Backend API JWKS, issuer equal to the Frontend API URL,
// exp/nbf/iat with Leeway, and, beyond the SDK's checks, a required exp,
// sid and sub, a "cat" header (when present) marking a session token, and
// "azp" (when present) among the authorized parties. Errors wrap
// ErrSessionToken and, where it applies, ErrTemplateToken, ErrMissingClaim
// or ErrAuthorizedParty.
func (p *Provider) VerifySessionToken(ctx context.Context, token string) (*SessionClaims, error) {
	if token == "" {
		return nil, refuse(ErrMissingClaim, "no session token posted", nil)
	}
	header, err := jwtHeader(token)
	if err != nil {
		return nil, refuse(nil, "malformed token", nil)
	}
	kid, _ := header["kid"].(string)
	key, err := p.keys.get(ctx, kid)
	if err != nil {
		return nil, err
	}
	issuer := p.cfg.FrontendAPIURL
	var azpBad bool
	claims, err := jwt.Verify(ctx, &jwt.VerifyParams{
		Token:    token,
		JWK:      key,
		Clock:    clock{p.cfg.Now},
		Leeway:   p.cfg.Leeway,
		ProxyURL: &issuer, // makes the SDK require iss == the Frontend API URL exactly
		AuthorizedPartyHandler: func(azp string) bool {
			azpBad = azp != "" && !slices.Contains(p.cfg.AuthorizedParties, azp)
			return !azpBad
		},
	})
	if err != nil {
		if azpBad {
			return nil, refuse(ErrAuthorizedParty, "azp is not an authorized party", nil)
		}
		return nil, refuse(nil, "", sanitize(err))
	}
	if cat, ok := header["cat"]; ok && cat != SessionTokenCategory {
		return nil, refuse(ErrTemplateToken, "the cat header does not mark a session token", nil)
	}
	switch {
	case claims.Expiry == nil:
		return nil, refuse(ErrMissingClaim, "no exp", nil)
	case claims.SessionID == "":
		return nil, refuse(ErrMissingClaim, "no sid", nil)
	case claims.Subject == "":
		return nil, refuse(ErrMissingClaim, "no sub", nil)
	}
	return &SessionClaims{
		Subject:         claims.Subject,
		SessionID:       claims.SessionID,
		AuthorizedParty: claims.AuthorizedParty,
		Expiry:          time.Unix(*claims.Expiry, 0),
	}, nil
}

// sanitize keeps the SDK's verification errors but drops the ones that quote
// token contents.
func sanitize(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "invalid issuer") {
		return errors.New("wrong issuer")
	}
	if strings.HasPrefix(msg, "invalid signing algorithm") {
		return errors.New("wrong signing algorithm")
	}
	return err
}

// activeSession returns the Clerk session, or an error wrapping
// ErrSessionInactive with its status.
func (p *Provider) activeSession(ctx context.Context, id string) (*sdk.Session, error) {
	s, err := p.sessions.Get(ctx, id)
	if err != nil {
		return nil, apiError("session.Get", err)
	}
	if s.Status != "active" {
		return nil, fmt.Errorf("%w: status %q", ErrSessionInactive, s.Status)
	}
	return s, nil
}

type clock struct{ now func() time.Time }

func (c clock) Now() time.Time { return c.now().UTC() }

// keyCache holds the instance's JWKS, fetched from the Backend API with the
// SDK and refreshed when a token names an unknown kid (at most every
// keyRefetch) or after keyTTL.
type keyCache struct {
	fetch func(context.Context) (*sdk.JSONWebKeySet, error)
	now   func() time.Time

	mu      sync.Mutex
	keys    map[string]*sdk.JSONWebKey
	fetched time.Time
}

const (
	keyTTL     = time.Hour
	keyRefetch = 10 * time.Second
)

func (c *keyCache) get(ctx context.Context, kid string) (*sdk.JSONWebKey, error) {
	if kid == "" {
		return nil, refuse(nil, "no kid header", nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if k, ok := c.keys[kid]; ok && now.Sub(c.fetched) < keyTTL {
		return k, nil
	}
	if c.keys == nil || now.Sub(c.fetched) >= keyRefetch {
		set, err := c.fetch(ctx)
		if err != nil {
			return nil, err
		}
		c.keys = map[string]*sdk.JSONWebKey{}
		for _, k := range set.Keys {
			if k != nil && k.KeyID != "" {
				c.keys[k.KeyID] = k
			}
		}
		c.fetched = now
	}
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	return nil, refuse(nil, "unknown signing key", nil)
}

func (p *Provider) fetchKeys(ctx context.Context) (*sdk.JSONWebKeySet, error) {
	set, err := p.jwks.Get(ctx, &jwks.GetParams{})
	if err != nil {
		return nil, apiError("jwks.Get", err)
	}
	return set, nil
}

// jwtHeader decodes a compact JWT's protected header without verifying it.
func jwtHeader(token string) (map[string]any, error) {
	h, _, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errors.New("not a JWT")
	}
	return decodeSegment(h)
}

func frontendOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return origin(u)
}
