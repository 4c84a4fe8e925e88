package clilogin

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/tokenstore"
)

// wantsIDToken reports whether a login at the server md describes is an
// OpenID Connect one: "openid" is among its scopes.
func (c *Client) wantsIDToken(md *metadata) bool { return slices.Contains(c.scopes(md), "openid") }

// scopes are the scopes a login at the server md describes requests:
// Config.Scopes when not nil, else the default Config.Scopes documents —
// nothing from a keyloop server or with Config.Endpoints; from another
// server that is an OpenID Provider (found by OpenID Connect Discovery, or
// "openid" in its scopes_supported) and publishes a jwks_uri to verify ID
// tokens with, "openid" and those of optionalScopes its scopes_supported
// lists.
// optionalScopes are the standard scopes a default login also asks an
// OpenID Provider for when it lists them: "profile" and "email" (OpenID
// Connect Core §5.4), so status can name the user, and "offline_access"
// (§11), so the login refreshes instead of ending with its first access
// token.
var optionalScopes = []string{"profile", "email", "offline_access"}

func (c *Client) scopes(md *metadata) []string {
	if c.cfg.Scopes != nil {
		return c.cfg.Scopes
	}
	if md.keyloop() || md.source == endpointsSource || md.JWKSURI == "" ||
		!md.oidcDiscovery && !slices.Contains(md.ScopesSupported, "openid") {
		return nil
	}
	s := []string{"openid"}
	for _, opt := range optionalScopes {
		if slices.Contains(md.ScopesSupported, opt) {
			s = append(s, opt)
		}
	}
	return s
}

// authOptions are the authorization request's parameters beyond
// oauth2.Config's: PKCE S256, the OpenID Connect nonce when there is one,
// and Config.AuthParams.
func (c *Client) authOptions(verifier, nonce string) []oauth2.AuthCodeOption {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if nonce != "" {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	for k, vs := range c.cfg.AuthParams {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	return opts
}

// loginRecord is the stored login's description of the server and of how
// its tokens are checked, before any token is in it. Its errors wrap
// ErrDiscovery: the server lacks what the configuration needs.
func (c *Client) loginRecord(md *metadata) (*tokenstore.Record, error) {
	rec := &tokenstore.Record{
		Issuer: md.Issuer, ClientID: c.cfg.ClientID, TokenEndpoint: md.TokenEndpoint,
		RevocationEndpoint: md.RevocationEndpoint, IssuerJWKSURI: md.JWKSURI, TokenAuth: c.authMethod(md),
	}
	aud := c.cfg.Audience
	if aud == "" {
		aud = md.AccessTokenAudience
	}
	verify := false
	switch c.cfg.AccessTokenVerification {
	case AccessTokenJWT:
		verify = true
	case AccessTokenAuto:
		verify = c.cfg.Audience != "" || md.AccessTokenIssuer != "" || md.AccessTokenAudience != "" || md.AccessTokenJWKSURI != ""
	}
	if verify {
		rec.JWKSURI, rec.TokenIssuer, rec.Audience = md.accessTokenJWKSURI(), md.AccessTokenIssuer, aud
		if rec.JWKSURI == "" {
			return nil, fmt.Errorf("%w: the metadata at %s has no jwks_uri, so access tokens cannot be verified (see Config.AccessTokenVerification)",
				ErrDiscovery, md.source)
		}
	} else {
		rec.AccessTokenOpaque = true
	}
	if c.wantsIDToken(md) && md.JWKSURI == "" {
		return nil, fmt.Errorf("%w: the metadata at %s has no jwks_uri, so ID tokens (the \"openid\" scope) cannot be verified",
			ErrDiscovery, md.source)
	}
	return rec, nil
}

// keyCache holds the key sets fetched while checking one token response,
// so an access token and an ID token signed with the same keys cost one
// fetch.
type keyCache map[string]keyfunc.Keyfunc

func (c *Client) keys(ctx context.Context, kc keyCache, uri string) (keyfunc.Keyfunc, error) {
	if kf, ok := kc[uri]; ok {
		return kf, nil
	}
	kf, err := c.fetchJWKS(ctx, uri)
	if err != nil {
		return nil, err
	}
	kc[uri] = kf
	return kf, nil
}

// answer is a token response to check: its tokens, when it arrived, and
// the expiry its expires_in announced (zero when unknown).
type answer struct {
	accessToken, idToken string
	received, expiry     time.Time
}

// accept checks the tokens of a token response against rec's rules (the
// login being made, or the stored one a refresh renews) and returns what
// the login keeps of them. The access token is verified as a JWT unless
// rec.AccessTokenOpaque (then its expiry is a.expiry, issued at
// a.received). An ID token, when present, is verified as OpenID Connect
// Core §3.1.3.7 says; nonce, when not empty, must be its "nonce".
// Subject and Account come from the ID token, else the access token; the
// result's idToken is the ID token when it was verified (the one to keep).
// Errors wrap ErrInvalidToken (or a key-fetch error) and quote no token.
func (c *Client) accept(ctx context.Context, rec *tokenstore.Record, a answer, nonce string) (*claims, error) {
	kc := keyCache{}
	out := &claims{IssuedAt: a.received, Expiry: a.expiry}
	if !rec.AccessTokenOpaque {
		kf, err := c.keys(ctx, kc, rec.JWKSURI)
		if err != nil {
			return nil, err
		}
		iss := rec.TokenIssuer
		if iss == "" {
			iss = rec.Issuer
		}
		if out, err = c.verifyWith(ctx, kf.KeyfuncCtx(ctx), a.accessToken, expect{jwksURI: rec.JWKSURI, issuer: iss, audience: rec.Audience}); err != nil {
			return nil, err
		}
	}
	if a.idToken == "" || rec.IssuerJWKSURI == "" {
		// No ID token, or one nothing can verify: a login stored before
		// this release (it did not keep the issuer's key set) whose server
		// now adds ID tokens to refresh answers. Login itself refuses the
		// "openid" scope without a jwks_uri (loginRecord), so an ID token
		// it asked for is never dropped here.
		return out, nil
	}
	kf, err := c.keys(ctx, kc, rec.IssuerJWKSURI)
	if err != nil {
		return nil, err
	}
	id, err := c.verifyIDToken(kf.KeyfuncCtx(ctx), a.idToken, rec.Issuer, rec.ClientID, nonce, a.accessToken)
	if err != nil {
		return nil, err
	}
	out.Subject, out.idToken = id.Subject, a.idToken
	if id.account() != "" {
		out.Account = id.account()
	}
	return out, nil
}

// idTokenClaims are the claims of an OpenID Connect ID token a client
// checks or shows.
type idTokenClaims struct {
	tokenClaims
	Nonce  string `json:"nonce,omitempty"`
	AZP    string `json:"azp,omitempty"`
	AtHash string `json:"at_hash,omitempty"`
}

// idTokenAlgs are the JWS algorithms ID tokens may be signed with: RS256,
// which OpenID Connect requires relying parties to support, and the other
// asymmetric ones providers offer. Never "none" (there is no front-channel
// ID token here), never HMAC (a public client holds no shared key).
var idTokenAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// verifyIDToken checks an ID token as OpenID Connect Core §3.1.3.7 says:
// signature by the issuer's keys with an allowed algorithm, "iss" exactly
// issuer (Google's may also be "accounts.google.com"), "aud" containing clientID (and, with several audiences, "azp"
// present), "azp" when present equal to clientID, "exp" and "iat" present
// and valid within the leeway, "sub" present, "nonce" equal to nonce when
// one was sent, and "at_hash", when present, matching accessToken.
func (c *Client) verifyIDToken(kf jwt.Keyfunc, raw, issuer, clientID, nonce, accessToken string) (*idTokenClaims, error) {
	var tc idTokenClaims
	tok, err := jwt.NewParser(
		jwt.WithValidMethods(idTokenAlgs),
		jwt.WithAudience(clientID),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.leeway),
		jwt.WithTimeFunc(c.now),
	).ParseWithClaims(raw, &tc, kf)
	if err != nil {
		return nil, fmt.Errorf("%w: ID token: %w", ErrInvalidToken, err)
	}
	switch {
	case !idTokenIssuer(tc.Issuer, issuer):
		return nil, fmt.Errorf("%w: the ID token's iss is not the issuer %s", ErrInvalidToken, issuer)
	case tc.Subject == "":
		return nil, fmt.Errorf("%w: the ID token has no subject", ErrInvalidToken)
	case tc.IssuedAt == nil:
		return nil, fmt.Errorf("%w: the ID token has no iat", ErrInvalidToken)
	case tc.AZP != "" && tc.AZP != clientID:
		return nil, fmt.Errorf("%w: the ID token was issued to another client (azp)", ErrInvalidToken)
	case len(tc.Audience) > 1 && tc.AZP == "":
		return nil, fmt.Errorf("%w: the ID token has several audiences and no azp", ErrInvalidToken)
	case nonce != "" && subtle.ConstantTimeCompare([]byte(tc.Nonce), []byte(nonce)) != 1:
		return nil, fmt.Errorf("%w: the ID token's nonce is not the one this login sent (a replayed or injected token)", ErrInvalidToken)
	}
	if tc.AtHash != "" {
		h := atHashFunc(tok.Method.Alg())
		if h == nil {
			return nil, fmt.Errorf("%w: the ID token's at_hash cannot be checked for algorithm %s", ErrInvalidToken, tok.Method.Alg())
		}
		h.Write([]byte(accessToken))
		sum := h.Sum(nil)
		want := base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
		if subtle.ConstantTimeCompare([]byte(tc.AtHash), []byte(want)) != 1 {
			return nil, fmt.Errorf("%w: the ID token's at_hash does not match the access token", ErrInvalidToken)
		}
	}
	return &tc, nil
}

// googleIssuer is Google's issuer, whose ID tokens may name it without the
// scheme ("accounts.google.com"), as Google's OpenID Connect documentation
// says; go-oidc accepts both forms too.
const googleIssuer = "https://accounts.google.com"

// idTokenIssuer reports whether an ID token's "iss" names issuer: exactly
// (OpenID Connect Core §3.1.3.7), or Google's scheme-less form.
func idTokenIssuer(iss, issuer string) bool {
	return iss == issuer || issuer == googleIssuer && iss == "accounts.google.com"
}

// atHashFunc is the hash of at_hash for a JWS algorithm (OpenID Connect
// Core §3.1.3.6: the one the algorithm uses; SHA-512 for Ed25519).
func atHashFunc(alg string) hash.Hash {
	switch alg {
	case "RS256", "PS256", "ES256":
		return sha256.New()
	case "RS384", "PS384", "ES384":
		return sha512.New384()
	case "RS512", "PS512", "ES512", "EdDSA":
		return sha512.New()
	}
	return nil
}

// userinfoTimeout bounds the userinfo request a login makes for a name to
// show: it is for display only.
const userinfoTimeout = 5 * time.Second

// userinfo asks the OpenID Connect userinfo endpoint who the access token
// belongs to. It is for display: Login uses it when the tokens name no
// account, and ignores its failures.
func (c *Client) userinfo(ctx context.Context, endpoint, accessToken string) (*tokenClaims, error) {
	ctx, cancel := context.WithTimeout(ctx, userinfoTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("userinfo endpoint %s answered %s", endpoint, sanitize(resp.Status, 64))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("userinfo endpoint %s answered %q (a signed answer is not read)", endpoint, sanitize(mt, 64))
	}
	var tc tokenClaims
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&tc); err != nil {
		return nil, fmt.Errorf("userinfo endpoint %s: %w", endpoint, err)
	}
	if tc.Subject == "" {
		return nil, fmt.Errorf("userinfo endpoint %s answered no sub", endpoint)
	}
	return &tc, nil
}
