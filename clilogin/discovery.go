package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxResponse bounds the bodies read from the server (metadata, JWKS).
const maxResponse = 1 << 20

// metadata is the part of RFC 8414 authorization server metadata (or of an
// OpenID Connect Discovery 1.0 provider configuration, a superset for what a
// CLI uses) that a login needs. It is the one description of a server the
// rest of the package works from, whether discovered or built from
// Config.Endpoints.
type metadata struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	UserinfoEndpoint              string   `json:"userinfo_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	// TokenEndpointAuthMethodsSupported decides how a client secret is
	// sent when Config.AuthStyle is zero; RFC 8414 §2's default, when
	// absent, is client_secret_basic.
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	// RFC 9207: the callback carries "iss".
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// keyloop extensions: the "iss", "aud" and keys of access tokens when
	// they differ from the issuer's (tokens minted by Clerk). jwks_uri is
	// the issuer's own key set (its ID tokens), as in OpenID Connect.
	AccessTokenIssuer   string `json:"access_token_issuer"`
	AccessTokenAudience string `json:"access_token_audience"`
	AccessTokenJWKSURI  string `json:"access_token_jwks_uri"`
	// RFC 8628: where the device flow starts; empty when not offered.
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
	// ScopesSupported (RFC 8414, OpenID Connect Discovery) decides the
	// default scopes (see Client.scopes).
	ScopesSupported []string `json:"scopes_supported"`

	// oidcDiscovery is set when the metadata was read from an OpenID
	// Connect Discovery URL (/.well-known/openid-configuration): the server
	// is an OpenID Provider.
	oidcDiscovery bool

	// source is where the metadata came from, for messages: the URL it was
	// read from, or "Config.Endpoints".
	source string
}

// Endpoints describe a provider that publishes no metadata (GitHub OAuth
// apps), or replace what it publishes. Authorization and Token are
// required; an empty optional endpoint means the provider has none.
type Endpoints struct {
	// Authorization is the authorization endpoint (RFC 6749 §3.1), where
	// the browser signs in. Required.
	Authorization string
	// Token is the token endpoint (RFC 6749 §3.2). Required.
	Token string
	// Revocation is the RFC 7009 revocation endpoint. Empty means the
	// provider cannot be asked to revoke: Logout removes the login from
	// this machine only and says so (ErrRevocationUnsupported).
	Revocation string
	// JWKS is the provider's key set (jwks_uri), which verifies ID tokens
	// and, when access tokens are verified, access tokens. Empty means
	// none: the "openid" scope and AccessTokenJWT cannot be used.
	JWKS string
	// Userinfo is the OpenID Connect userinfo endpoint. Empty means none.
	Userinfo string
	// DeviceAuthorization is the RFC 8628 device authorization endpoint
	// (GitHub's https://github.com/login/device/code), for Config.Device.
	// Empty means the provider offers no device flow.
	DeviceAuthorization string
}

// endpointsSource is metadata.source for Config.Endpoints.
const endpointsSource = "Config.Endpoints"

// wellKnown are the well-known URI suffixes tried, RFC 8414's first.
const (
	wkOAuth = "/.well-known/oauth-authorization-server" // RFC 8414 §3
	wkOIDC  = "/.well-known/openid-configuration"       // OpenID Connect Discovery 1.0 §4
)

// metadataURLs returns where the metadata of issuer may be, in the order
// they are tried. For an issuer without a path: RFC 8414's URL, then
// OpenID Connect's. For an issuer with a path (any terminating "/"
// removed first, as both standards say): RFC 8414's form with the
// well-known segment inserted before the path (§3.1), OpenID Connect's form
// with it appended (Discovery §4), OpenID Connect's inserted form (RFC 8414
// §5), and RFC 8414's appended form that many servers use.
func metadataURLs(issuer string) []string {
	base := strings.TrimSuffix(issuer, "/")
	u, _ := url.Parse(base)
	if u.Path == "" {
		return []string{base + wkOAuth, base + wkOIDC}
	}
	inserted := func(wk string) string {
		v := *u
		v.Path, v.RawPath = wk+u.Path, ""
		if u.RawPath != "" {
			v.RawPath = wk + u.RawPath
		}
		return v.String()
	}
	return []string{inserted(wkOAuth), base + wkOIDC, inserted(wkOIDC), base + wkOAuth}
}

// sameIssuer reports whether the issuer a server publishes names the
// configured one. They must be identical, except for one terminating "/"
// that either may carry: a person typing the URL cannot know which form a
// provider publishes ("https://tenant.auth0.com/" but
// "https://accounts.google.com"), and the metadata was fetched from that
// URL. From then on the published form is the issuer: the callback's "iss",
// the tokens' "iss" and the stored login use it exactly.
func sameIssuer(published, configured string) bool {
	return published == configured ||
		published == configured+"/" || published+"/" == configured
}

// discover returns the server's metadata: Config.Endpoints when set, else
// the first metadata document found at metadataURLs(Issuer). A URL that
// answers 4xx, or 200 with something other than JSON (a web app's page for
// every path), is skipped; any other failure ends discovery.
func (c *Client) discover(ctx context.Context) (*metadata, error) {
	if e := c.cfg.Endpoints; e != nil {
		md := &metadata{
			Issuer: c.cfg.Issuer, AuthorizationEndpoint: e.Authorization, TokenEndpoint: e.Token,
			RevocationEndpoint: e.Revocation, JWKSURI: e.JWKS, UserinfoEndpoint: e.Userinfo,
			DeviceAuthorizationEndpoint: e.DeviceAuthorization,
			source:                      endpointsSource,
		}
		return md, nil // checked by New
	}
	var tried []string
	var errs []error
	for _, u := range metadataURLs(c.cfg.Issuer) {
		md, err := c.fetchMetadata(ctx, u)
		if err == nil {
			if err := c.checkMetadata(md); err != nil {
				return nil, err
			}
			return md, nil
		}
		var skip *skipMetadata
		if !errors.As(err, &skip) {
			if ctx.Err() != nil && !errors.Is(err, ErrServerUnreachable) {
				return nil, fmt.Errorf("%w: %w", ErrDiscovery, ctx.Err())
			}
			return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
		}
		tried = append(tried, fmt.Sprintf("%s (%s)", u, skip.why))
		errs = append(errs, err)
	}
	return nil, &userError{
		msg: fmt.Sprintf("clilogin: discovery failed: no metadata for issuer %s: %s",
			c.cfg.Issuer, strings.Join(tried, ", ")),
		user: fmt.Sprintf("Found no OAuth metadata for %s at %s. Check the server URL; for a provider that publishes none, configure its endpoints.",
			c.cfg.Issuer, strings.Join(tried, ", ")),
		errs: append([]error{ErrDiscovery}, errs...),
	}
}

// skipMetadata means a metadata URL does not serve metadata (4xx, or a
// page that is not JSON): the next one is tried.
type skipMetadata struct{ why string }

func (e *skipMetadata) Error() string { return e.why }

func (c *Client) fetchMetadata(ctx context.Context, u string) (*metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, "metadata endpoint", u, start, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return nil, &skipMetadata{why: sanitize(resp.Status, 64)}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s answered %s", u, sanitize(resp.Status, 64))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, &skipMetadata{why: fmt.Sprintf("%q, not JSON", sanitize(mt, 64))}
	}
	var md metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&md); err != nil {
		return nil, fmt.Errorf("GET %s: malformed metadata: %w", u, err)
	}
	md.source = u
	md.oidcDiscovery = strings.Contains(u, wkOIDC)
	return &md, nil
}

func (c *Client) checkMetadata(md *metadata) error {
	if !sameIssuer(md.Issuer, c.cfg.Issuer) {
		return fmt.Errorf("%w: %w: the metadata at %s names issuer %q, not the configured %q",
			ErrDiscovery, ErrIssuerMismatch, md.source, sanitize(md.Issuer, 200), c.cfg.Issuer)
	}
	for _, e := range []struct{ name, u string }{
		{"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint},
	} {
		if e.u == "" {
			return fmt.Errorf("%w: the metadata at %s has no %s", ErrDiscovery, md.source, e.name)
		}
		if err := checkServerURL(e.name, e.u); err != nil {
			return fmt.Errorf("%w: %w", ErrDiscovery, err)
		}
	}
	for _, e := range []struct{ name, u string }{
		{"jwks_uri", md.JWKSURI},
		{"revocation_endpoint", md.RevocationEndpoint},
		{"userinfo_endpoint", md.UserinfoEndpoint},
		{"access_token_jwks_uri", md.AccessTokenJWKSURI},
		{"device_authorization_endpoint", md.DeviceAuthorizationEndpoint},
	} {
		if e.u == "" {
			continue
		}
		if err := checkServerURL(e.name, e.u); err != nil {
			return fmt.Errorf("%w: %w", ErrDiscovery, err)
		}
	}
	if strings.Contains(md.AuthorizationEndpoint, "#") {
		return fmt.Errorf("%w: authorization_endpoint has a fragment", ErrDiscovery)
	}
	// PKCE is always used. A server that lists its methods must list
	// S256; one that lists none (OpenID Connect Discovery has no such
	// field, and Entra ID publishes none) gets the challenge all the same.
	if len(md.CodeChallengeMethodsSupported) > 0 && !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
		return fmt.Errorf("%w: the server does not support PKCE S256 (its code_challenge_methods_supported lists %s)",
			ErrDiscovery, sanitize(strings.Join(md.CodeChallengeMethodsSupported, ", "), 100))
	}
	return nil
}

// showsConfirmCode reports whether the server is a keyloop server, whose
// consent page shows the confirmation code derived from the state
// (internal/confirm): its metadata carries the keyloop extension
// access_token_issuer, which keyloop servers always publish. Other
// providers show no such code, and telling the user to compare one would
// be false.
func (md *metadata) showsConfirmCode() bool { return md.keyloop() }

// keyloop reports whether the server is a keyloop server: its metadata
// carries the keyloop extension access_token_issuer, which keyloop servers
// always publish.
func (md *metadata) keyloop() bool { return md.AccessTokenIssuer != "" }

// accessTokenJWKSURI is where the keys of access tokens are.
func (md *metadata) accessTokenJWKSURI() string {
	if md.AccessTokenJWKSURI != "" {
		return md.AccessTokenJWKSURI
	}
	return md.JWKSURI
}
