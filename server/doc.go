// Package server is keyloop's authorization server: an http.Handler that
// lets a CLI log its user in through the browser with the OAuth 2.0
// authorization-code flow for native apps (RFC 8252, PKCE S256 required),
// and hands it a signed JWT access token plus a rotating refresh token.
//
// Two seams make it fit an application: an Authenticator finds out who the
// browser user is (DevAuthenticator for development; server/clerk for
// Clerk), and a Minter turns that identity into a JWT (SelfSigned; or
// server/clerk). Short-lived state (pending authorizations, single-use
// codes, refresh tokens, revocation markers) lives in a StateStore
// (NewMemoryStateStore by default; share one across instances).
//
// Routes, relative to Config.Issuer (mount the Handler at the application
// root):
//
//	GET      /.well-known/oauth-authorization-server  RFC 8414 metadata
//	GET      /.well-known/openid-configuration        the same document (OpenID Connect Discovery 1.0)
//	GET      /oauth/authorize                         authorization request
//	GET,POST /oauth/signin?req=ID                     sign-in and consent
//	POST     /oauth/token                             authorization_code, refresh_token, device_code
//	POST     /oauth/revoke                            RFC 7009 revocation
//	GET      /oauth/jwks                              public keys: ID tokens, and KeySetPublisher minters' access tokens
//	GET,POST /oauth/userinfo                          OpenID Connect userinfo
//	POST     /oauth/device_authorization              RFC 8628 device authorization
//	GET,POST /oauth/device                            RFC 8628 verification page (user code entry)
//
// The device authorization grant (RFC 8628) is offered to clients with
// Client.DeviceFlow: the CLI shows a short user code and the verification
// page's address and polls the token endpoint, while the user enters the
// code on any device, signs in through the same Authenticator and approves
// on the same consent page; see DeviceFlowConfig.
//
// The handler is an OpenID Provider as well: a client that asks for the
// "openid" scope gets an ID token, signed with Config.IDTokenKey (RS256 by
// default), next to every access token, so OpenID Connect clients
// (kubelogin, oauth2c, go-oidc) log in with nothing but the issuer URL and a
// client ID. Scope values other than "openid", "profile", "email" and
// "offline_access" are ignored (OpenID Connect Core §3.1.2.1); refresh
// tokens are issued with or without "offline_access". Access tokens carry
// "aud", the API audience (SelfSignedConfig.Audience, by default the
// issuer), and ID tokens the client ID, so neither passes for the other.
//
// Keys: jwks_uri, in both metadata documents, is the handler's own key set.
// When access tokens are signed elsewhere (server/clerk: Clerk's keys and
// issuer), the metadata says so in three keyloop extensions,
// access_token_jwks_uri, access_token_issuer and access_token_audience,
// which the keyloop CLI reads; OpenID relying parties verify ID tokens with
// jwks_uri and never see the difference.
//
// Refresh tokens are opaque, stored only as hashes, bound to the client and
// to the login session (one browser sign-in), rotated on every use, and
// capped at Config.RefreshTokenMaxLifetime after the sign-in. Presenting an
// already-rotated refresh token revokes the whole login session (RFC 9700
// §4.14.2); so does presenting a used authorization code again. One
// exception keeps a lost response from costing the login: within
// Config.RefreshTokenReuseGrace (30 s by default) after a rotation, the
// rotated token may be presented once more, while its successor is unused,
// and gets that same successor again.
//
// SelfSigned signs with a KeySet: a single key (SelfSignedConfig.Key), or a
// set every replica shares and rotates without downtime (LoadKeyDir reads
// one file per key and an "active" file; NewKeySet takes keys from anywhere,
// e.g. ParseKeys of an environment variable). The JWKS publishes every key of
// the set; one active key per algorithm signs; see KeySet for the rotation
// steps. A missing key is an error, never a silently generated one
// (SelfSignedConfig.AllowEphemeralKey is for tests).
//
// The application's own API routes use Handler.RequireToken, which verifies
// tokens the way a careful client does and puts Claims into the request
// context.
package server
