package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Paths of the handler's endpoints, relative to the issuer.
const (
	MetadataPath            = "/.well-known/oauth-authorization-server"
	OpenIDConfigurationPath = "/.well-known/openid-configuration"
	AuthorizePath           = "/oauth/authorize"
	SignInPath              = "/oauth/signin"
	TokenPath               = "/oauth/token"
	RevokePath              = "/oauth/revoke"
	JWKSPath                = "/oauth/jwks"
	UserInfoPath            = "/oauth/userinfo"
)

// CSRFField is the form field name of the CSRF token on sign-in and consent
// forms.
const CSRFField = "csrf_token"

// browserCookie binds pending authorizations to the browser that started
// them.
const browserCookie = "keyloop_browser"

// maxFormBytes bounds request bodies of every endpoint.
const maxFormBytes = 64 << 10

// Handler is the authorization server and OpenID Provider: an http.Handler
// serving the routes MetadataPath, OpenIDConfigurationPath, AuthorizePath,
// SignInPath, TokenPath, RevokePath, JWKSPath, UserInfoPath,
// DeviceAuthorizationPath and DevicePath, mounted at the application root,
// e.g.
//
//	mux.Handle(server.MetadataPath, h)
//	mux.Handle(server.OpenIDConfigurationPath, h)
//	mux.Handle("/oauth/", h)
//
// It also verifies the tokens it issued for the application's own API
// (RequireToken) and records revocations (RevokeSubject,
// RevokeIdentitySession). It is safe for concurrent use.
type Handler struct {
	cfg      Config
	clients  map[string]Client
	pages    *pages
	verifier *Verifier
	metadata []byte
	jwks     KeySetPublisher // the Minter's keys; nil when served elsewhere
	idSigner idTokenSigner
	log      *slog.Logger

	jwksCache atomic.Pointer[jwksDoc] // the last JWKS document served
}

// CheckAccessTokener is implemented by minters that want to refuse some
// verified access tokens beyond the standard checks (server/clerk accepts
// only tokens of its own JWT template, for instance). RequireToken calls it
// after signature, issuer, audience and time checks have passed.
type CheckAccessTokener interface {
	CheckAccessToken(header map[string]any, claims map[string]any) error
}

// keySetHolder is implemented by minters with a live KeySet (SelfSigned):
// the handler verifies with it, so RequireToken follows key rotation.
type keySetHolder interface{ KeySet() *KeySet }

// New returns a Handler for cfg; configuration errors wrap ErrInvalidConfig.
func New(cfg Config) (*Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, clients: map[string]Client{}, log: cfg.Logger}
	for _, c := range cfg.Clients {
		h.clients[c.ID] = c
	}
	fallbackName := issuerHost(cfg.Issuer)
	if len(cfg.Clients) == 1 {
		fallbackName = cfg.Clients[0].Name
	}
	if h.pages, err = loadPages(cfg.Brand, fallbackName, cfg.Templates, cfg.Logger); err != nil {
		return nil, err
	}
	ki := cfg.Minter.KeyInfo()
	for _, c := range cfg.Clients {
		if ki.Audience != "" && ki.Audience == c.ID {
			// ID tokens are addressed to the client ID: RequireToken
			// could not tell them from access tokens.
			return nil, fmt.Errorf("%w: the access token audience %q is also a client ID", ErrInvalidConfig, c.ID)
		}
	}
	vc := VerifierConfig{Issuer: cfg.Issuer, Audience: ki.Audience, Now: cfg.Now, State: cfg.State,
		RevocationCacheTTL: cfg.RevocationCacheTTL, RevocationFailOpen: cfg.RevocationFailOpen, Logger: cfg.Logger}
	if ki.TokenIssuer != "" {
		vc.Issuer = ki.TokenIssuer
	}
	if ki.JWKSURI == "" {
		pub, ok := cfg.Minter.(KeySetPublisher)
		if !ok {
			return nil, fmt.Errorf("%w: Minter has no KeyInfo().JWKSURI and does not implement KeySetPublisher", ErrInvalidConfig)
		}
		h.jwks = pub
		if vc.JWKS, err = pub.JWKS(); err != nil {
			return nil, fmt.Errorf("%w: Minter JWKS: %w", ErrInvalidConfig, err)
		}
		if ks, ok := cfg.Minter.(keySetHolder); ok && ks.KeySet() != nil {
			// Keys rotated by KeySet.Reload count at once.
			vc.JWKS, vc.KeySet = nil, ks.KeySet()
		}
	} else {
		vc.JWKSURL = ki.JWKSURI
	}
	if c, ok := cfg.Minter.(CheckAccessTokener); ok {
		vc.Check = c.CheckAccessToken
	}
	if h.verifier, err = NewVerifier(vc); err != nil {
		return nil, err
	}
	if h.idSigner, err = newIDTokenSigner(cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if h.metadata, err = h.metadataDoc(ki); err != nil {
		return nil, err
	}
	return h, nil
}

// Close releases the background resources of the handler's verifier (a
// remote JWKS refresh). The handler keeps serving the OAuth endpoints.
func (h *Handler) Close() error { return h.verifier.Close() }

// Metadata returns the metadata document the handler serves at MetadataPath
// (RFC 8414) and OpenIDConfigurationPath (OpenID Connect Discovery 1.0).
func (h *Handler) Metadata() []byte { return append([]byte(nil), h.metadata...) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case MetadataPath, OpenIDConfigurationPath:
		h.serveJSONDoc(w, r, h.metadata)
	case JWKSPath:
		b, err := h.jwksDoc()
		if err != nil {
			h.log.ErrorContext(r.Context(), "server: JWKS", "err", err)
			http.Error(w, "server: JWKS unavailable", http.StatusInternalServerError)
			return
		}
		h.serveJSONDoc(w, r, b)
	case AuthorizePath:
		h.authorize(w, r)
	case SignInPath:
		h.signIn(w, r)
	case TokenPath:
		h.token(w, r)
	case RevokePath:
		h.revoke(w, r)
	case DeviceAuthorizationPath:
		h.deviceAuthorization(w, r)
	case DevicePath:
		h.deviceVerify(w, r)
	case UserInfoPath:
		h.userInfo(w, r)
	default:
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.NotFound(w, r)
	}
}

func (h *Handler) serveJSONDoc(w http.ResponseWriter, r *http.Request, b []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "server: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(b)
}

// RequireToken wraps next so that it only runs for requests with a valid
// bearer access token minted through this handler's Minter; see
// Verifier.RequireToken. Tokens whose login session ("sid") or subject was
// revoked are refused: at once for revocations this Handler records, within
// Config.RevocationCacheTTL for those other instances record. The
// StateStore is read at most once per RevocationCacheTTL for each login
// session and subject, not on every request; Config.RevocationFailOpen
// says what happens while it cannot answer.
func (h *Handler) RequireToken(next http.Handler) http.Handler { return h.verifier.RequireToken(next) }

// VerifyToken verifies an access token as RequireToken does.
func (h *Handler) VerifyToken(ctx context.Context, raw string) (*Claims, error) {
	return h.verifier.Verify(ctx, raw)
}

// Keys in the StateStore.
const (
	keyPending        = "keyloop:pending:"
	keyCode           = "keyloop:code:"
	keyCodeUsed       = "keyloop:code-used:"
	keyRefresh        = "keyloop:rt:"
	keyRefreshKnown   = "keyloop:rt-known:"
	keyRevokedSession = "keyloop:revoked-session:"
	keyRevokedSubject = "keyloop:revoked-sub:"
)

// RevokeSubject ends every login session of the user sub that started before
// now: their refresh tokens are refused, and so are their access tokens
// issued until now at RequireToken. It stores one marker for
// RefreshTokenMaxLifetime; no index of sessions is kept.
func (h *Handler) RevokeSubject(ctx context.Context, sub string) error {
	if sub == "" {
		return errors.New("server: RevokeSubject: empty subject")
	}
	v := []byte(strconv.FormatInt(h.cfg.Now().UnixNano(), 10))
	if err := h.cfg.State.Put(ctx, keyRevokedSubject+sub, v, h.cfg.RefreshTokenMaxLifetime); err != nil {
		return fmt.Errorf("server: RevokeSubject: %w", err)
	}
	h.verifier.learnRevocation(keyRevokedSubject+sub, v)
	h.log.InfoContext(ctx, "server: subject revoked", "sub", sub)
	return nil
}

// RevokeIdentitySession ends every login session signed in through the
// identity layer's session id (Identity.SessionID, e.g. a Clerk session),
// and refuses access tokens whose "sid" is id. It stores one marker for
// RefreshTokenMaxLifetime.
func (h *Handler) RevokeIdentitySession(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("server: RevokeIdentitySession: empty session ID")
	}
	if err := h.revokeSession(ctx, id); err != nil {
		return fmt.Errorf("server: RevokeIdentitySession: %w", err)
	}
	return nil
}

func (h *Handler) revokeSession(ctx context.Context, sid string) error {
	if err := h.cfg.State.Put(ctx, keyRevokedSession+sid, []byte{1}, h.cfg.RefreshTokenMaxLifetime); err != nil {
		return err
	}
	h.verifier.learnRevocation(keyRevokedSession+sid, []byte{1})
	return nil
}

// isRevoked reports whether any of the session IDs carries a revocation
// marker, or sub was revoked at or after authTime. Store errors other than
// ErrStateNotFound are returned (callers fail closed).
func isRevoked(ctx context.Context, st StateStore, loginSID, identitySID, sub string, authTime time.Time) (bool, error) {
	for _, id := range []string{loginSID, identitySID} {
		if id == "" {
			continue
		}
		_, err := st.Get(ctx, keyRevokedSession+id)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, ErrStateNotFound) {
			return false, err
		}
	}
	if sub == "" {
		return false, nil
	}
	b, err := st.Get(ctx, keyRevokedSubject+sub)
	if errors.Is(err, ErrStateNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return true, nil // an unreadable marker revokes
	}
	return !authTime.After(time.Unix(0, n)), nil
}

// randomID returns 256 random bits, base64url-encoded (43 characters).
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// isRandomID reports whether s has the shape randomID produces.
func isRandomID(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// hashSecret is the StateStore key part for a secret (codes, refresh
// tokens, browser bindings): the secret itself is never stored.
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// redirectTo answers 302 to base with params added to its query; iss is
// always added (RFC 9207).
func (h *Handler) redirectTo(w http.ResponseWriter, base *url.URL, params url.Values) {
	u := *base
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	q.Set("iss", h.cfg.Issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
}

func (h *Handler) putJSON(ctx context.Context, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return h.cfg.State.Put(ctx, key, b, ttl)
}
