package clilogin

import (
	"slices"
	"strings"
	"testing"
)

// The scopes a nil Config.Scopes requests, decided from the metadata:
// nothing from a keyloop server (or with Endpoints, or a plain OAuth
// server), "openid" (and "profile", "email", "offline_access" when listed)
// from an OpenID Provider.
func TestDefaultScopes(t *testing.T) {
	const jwks = "https://op.example/jwks"
	for _, tc := range []struct {
		name string
		md   metadata
		cfg  []string
		want []string
	}{
		{"keyloop server", metadata{AccessTokenIssuer: "https://kl.example", JWKSURI: jwks,
			ScopesSupported: []string{"openid", "profile", "email", "offline_access"}, source: "https://kl.example" + wkOAuth}, nil, nil},
		{"keyloop server found by OIDC discovery", metadata{AccessTokenIssuer: "https://kl.example", JWKSURI: jwks,
			oidcDiscovery: true, source: "https://kl.example" + wkOIDC}, nil, nil},
		{"OIDC discovery, no scopes_supported", metadata{JWKSURI: jwks, oidcDiscovery: true, source: "https://op.example" + wkOIDC}, nil,
			[]string{"openid"}},
		{"OIDC discovery, optional scopes listed", metadata{JWKSURI: jwks, oidcDiscovery: true,
			ScopesSupported: []string{"address", "offline_access", "email", "openid", "phone", "profile"}}, nil,
			[]string{"openid", "profile", "email", "offline_access"}},
		{"OIDC discovery, offline_access not listed (Google)", metadata{JWKSURI: jwks, oidcDiscovery: true,
			ScopesSupported: []string{"openid", "email", "profile"}}, nil, []string{"openid", "profile", "email"}},
		{"RFC 8414 metadata listing openid", metadata{JWKSURI: jwks, ScopesSupported: []string{"openid", "read", "offline_access"}}, nil,
			[]string{"openid", "offline_access"}},
		{"RFC 8414 metadata without openid", metadata{JWKSURI: jwks, ScopesSupported: []string{"read", "offline_access"}}, nil, nil},
		{"RFC 8414 metadata without scopes_supported", metadata{JWKSURI: jwks}, nil, nil},
		{"OpenID Provider without jwks_uri", metadata{oidcDiscovery: true, ScopesSupported: []string{"openid"}}, nil, nil},
		{"Endpoints", metadata{JWKSURI: jwks, source: endpointsSource}, nil, nil},
		{"configured scopes win", metadata{JWKSURI: jwks, oidcDiscovery: true, ScopesSupported: []string{"openid", "offline_access"}},
			[]string{"repo"}, []string{"repo"}},
		{"configured empty slice: none", metadata{JWKSURI: jwks, oidcDiscovery: true}, []string{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{cfg: Config{Scopes: tc.cfg}}
			got := c.scopes(&tc.md)
			if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("scopes = %#v, want %#v", got, tc.want)
			}
			if c.wantsIDToken(&tc.md) != slices.Contains(tc.want, "openid") {
				t.Errorf("wantsIDToken = %t", c.wantsIDToken(&tc.md))
			}
		})
	}
}

// A Config without Scopes (examples/mytool's) logs in unchanged to a
// keyloop server (no scope requested) and to an OpenID Provider (which
// refuses a request without one): "openid", "profile", "email" and
// "offline_access" are requested, the ID token is verified and names the user, and the login
// refreshes.
func TestDefaultScopesLogin(t *testing.T) {
	t.Run("keyloop server", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Scopes = nil
		h.loginOK()
		q := h.as.LastAuthQuery.Load()
		if q.Has("scope") || q.Has("nonce") {
			t.Errorf("authorization request to a keyloop server: scope %q, nonce %t", q.Get("scope"), q.Has("nonce"))
		}
		if rec := h.stored(); rec.IDToken != "" || rec.AccessTokenOpaque {
			t.Errorf("stored: ID token %t, opaque access token %t", rec.IDToken != "", rec.AccessTokenOpaque)
		}
	})
	t.Run("OpenID Provider", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Scopes = nil
		h.as.MetadataPaths = []string{wkOIDC}
		h.as.MetaOverride = map[string]any{
			"access_token_issuer": nil, // not a keyloop server
			"scopes_supported":    []string{"openid", "profile", "email", "offline_access"},
		}
		sess := h.loginOK()
		q := h.as.LastAuthQuery.Load()
		if q.Get("scope") != "openid profile email offline_access" || q.Get("nonce") == "" {
			t.Errorf("authorization request: scope %q, nonce %q", q.Get("scope"), q.Get("nonce"))
		}
		rec := h.stored()
		if sess.Subject != "user-1" || rec.IDToken == "" || !rec.AccessTokenOpaque || !sess.CanRefresh {
			t.Errorf("session %+v; stored ID token %t, opaque access token %t", sess, rec.IDToken != "", rec.AccessTokenOpaque)
		}
	})
	t.Run("OpenID Provider, device flow", func(t *testing.T) {
		h := newHarness(t)
		h.cfg.Scopes = nil
		h.as.MetadataPaths = []string{wkOIDC}
		d := newDeviceServer(h, "approve")
		h.as.MetaOverride["access_token_issuer"] = nil
		h.as.MetaOverride["scopes_supported"] = []string{"openid"}
		r := h.runDevice(t.Context(), nil)
		// This device server's answers carry no ID token: the default
		// "openid" makes the login require one.
		if d.authForm.Get("scope") != "openid" || r.err == nil || !strings.Contains(r.err.Error(), "no ID token") {
			t.Errorf("device authorization scope %q; Login: %v", d.authForm.Get("scope"), r.err)
		}
	})
}
