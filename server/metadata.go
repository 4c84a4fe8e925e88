package server

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// metadataDoc builds the handler's metadata: one document, served at both
// MetadataPath (RFC 8414) and OpenIDConfigurationPath (OpenID Connect
// Discovery 1.0 §3), so the two never disagree. It carries every field
// OpenID Connect Discovery requires (issuer, authorization_endpoint,
// token_endpoint, jwks_uri, response_types_supported,
// subject_types_supported, id_token_signing_alg_values_supported) and those
// it recommends (userinfo_endpoint, scopes_supported, claims_supported).
//
// jwks_uri is the handler's own key set: the ID-token keys, plus the
// access-token keys when the Minter publishes them there (SelfSigned). When
// access tokens are signed elsewhere (Clerk), three keyloop extensions say
// how to verify them: access_token_jwks_uri, access_token_issuer and
// access_token_audience (the last two are also set when the Minter signs
// with the handler's keys and issuer, so a client has one rule).
func (h *Handler) metadataDoc(ki KeyInfo) ([]byte, error) {
	iss := h.cfg.Issuer
	md := map[string]any{
		"issuer":   iss,
		"jwks_uri": iss + JWKSPath,
	}
	// Endpoints, relative to the issuer: a new one is one line here.
	for _, e := range []struct {
		name, path string
		on         bool
	}{
		{"authorization_endpoint", AuthorizePath, true},
		{"token_endpoint", TokenPath, true},
		{"revocation_endpoint", RevokePath, true},
		{"userinfo_endpoint", UserInfoPath, true},
		{"device_authorization_endpoint", DeviceAuthorizationPath, h.deviceFlowEnabled()},
	} {
		if e.on {
			md[e.name] = iss + e.path
		}
	}
	for k, v := range map[string]any{
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          h.grantTypes(),
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"revocation_endpoint_auth_methods_supported":     []string{"none"},
		"authorization_response_iss_parameter_supported": true,
		"scopes_supported":                               supportedScopes,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{h.idSigner.algorithm()},
		"claims_supported": []string{"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
			"email", "email_verified", "name"},
		"claims_parameter_supported":      false,
		"request_parameter_supported":     false,
		"request_uri_parameter_supported": false, // OpenID Connect Discovery's default is true
	} {
		md[k] = v
	}
	md["access_token_issuer"] = iss
	if ki.TokenIssuer != "" {
		md["access_token_issuer"] = ki.TokenIssuer
	}
	if ki.JWKSURI != "" {
		md["access_token_jwks_uri"] = ki.JWKSURI
	}
	if ki.Audience != "" {
		md["access_token_audience"] = ki.Audience
	}
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("server: metadata: %w", err)
	}
	return b, nil
}

// jwksDoc returns the JWKS served at JWKSPath: the Minter's keys when it
// publishes them here (KeySetPublisher) and the ID-token keys, each kid
// once. The document is built again only when one of the two key sets
// changed (a KeySet reload, a Minter with new keys): each is compared with
// the one the last document was built from.
func (h *Handler) jwksDoc() ([]byte, error) {
	var minter []byte
	if h.jwks != nil {
		b, err := h.jwks.JWKS()
		if err != nil {
			return nil, err
		}
		minter = b
	}
	id, err := h.idSigner.publicJWKS()
	if err != nil {
		return nil, err
	}
	if c := h.jwksCache.Load(); c != nil && bytes.Equal(c.minter, minter) && bytes.Equal(c.id, id) {
		return c.doc, nil
	}
	var set, idSet struct {
		Keys []map[string]any `json:"keys"`
	}
	if minter != nil {
		if err := json.Unmarshal(minter, &set); err != nil {
			return nil, fmt.Errorf("the Minter's JWKS: %w", err)
		}
	}
	if err := json.Unmarshal(id, &idSet); err != nil {
		return nil, fmt.Errorf("the ID-token JWKS: %w", err)
	}
	seen := map[any]bool{}
	for _, k := range set.Keys {
		seen[k["kid"]] = true
	}
	for _, k := range idSet.Keys {
		if !seen[k["kid"]] {
			set.Keys = append(set.Keys, k)
		}
	}
	if set.Keys == nil {
		set.Keys = []map[string]any{}
	}
	doc, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	h.jwksCache.Store(&jwksDoc{minter: minter, id: id, doc: doc})
	return doc, nil
}

// jwksDoc is a JWKS document served at JWKSPath and the key sets it was
// built from. It is never modified once stored.
type jwksDoc struct{ minter, id, doc []byte }
