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

// metadata is the part of RFC 8414 authorization server metadata a CLI uses.
type metadata struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
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
}

// metadataURLs returns where the metadata of issuer may be: the RFC 8414 §3.1
// form (well-known segment before the issuer's path) and, for issuers with a
// path, the appended form many servers use.
func metadataURLs(issuer string) []string {
	const wk = "/.well-known/oauth-authorization-server"
	u, _ := url.Parse(issuer)
	if u.Path == "" || u.Path == "/" {
		return []string{issuer + wk}
	}
	inserted := *u
	inserted.Path = wk + u.Path
	inserted.RawPath = ""
	return []string{inserted.String(), issuer + wk}
}

// discover fetches and checks the server's metadata.
func (c *Client) discover(ctx context.Context) (*metadata, error) {
	var lastErr error
	for _, u := range metadataURLs(c.cfg.Issuer) {
		md, status, err := c.fetchMetadata(ctx, u)
		if err == nil {
			if err := c.checkMetadata(md); err != nil {
				return nil, err
			}
			return md, nil
		}
		lastErr = err
		if status != http.StatusNotFound {
			break
		}
	}
	if ctx.Err() != nil && !errors.Is(lastErr, ErrServerUnreachable) {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, ctx.Err())
	}
	return nil, fmt.Errorf("%w: %w", ErrDiscovery, lastErr)
}

func (c *Client) fetchMetadata(ctx context.Context, u string) (*metadata, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, c.unreachable(ctx, "metadata endpoint", u, start, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s answered %s", u, resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, resp.StatusCode, fmt.Errorf("GET %s answered %q, not JSON", u, mt)
	}
	var md metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&md); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: malformed metadata: %w", u, err)
	}
	return &md, resp.StatusCode, nil
}

func (c *Client) checkMetadata(md *metadata) error {
	if md.Issuer != c.cfg.Issuer {
		return fmt.Errorf("%w: %w: the metadata names issuer %q, not the configured %q",
			ErrDiscovery, ErrIssuerMismatch, sanitize(md.Issuer, 200), c.cfg.Issuer)
	}
	for _, e := range []struct{ name, u string }{
		{"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint},
		{"jwks_uri", md.JWKSURI},
	} {
		if e.u == "" {
			return fmt.Errorf("%w: the metadata has no %s", ErrDiscovery, e.name)
		}
		if err := checkServerURL(e.name, e.u); err != nil {
			return fmt.Errorf("%w: %w", ErrDiscovery, err)
		}
	}
	for _, e := range []struct{ name, u string }{
		{"revocation_endpoint", md.RevocationEndpoint},
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
	if !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
		return fmt.Errorf("%w: the server does not advertise PKCE S256 (code_challenge_methods_supported)", ErrDiscovery)
	}
	return nil
}

// accessTokenJWKSURI is where the keys of access tokens are.
func (md *metadata) accessTokenJWKSURI() string {
	if md.AccessTokenJWKSURI != "" {
		return md.AccessTokenJWKSURI
	}
	return md.JWKSURI
}

// tokenIssuer is the expected "iss" of access tokens.
func (md *metadata) tokenIssuer() string {
	if md.AccessTokenIssuer != "" {
		return md.AccessTokenIssuer
	}
	return md.Issuer
}
