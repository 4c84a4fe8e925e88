package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken is wrapped by Verifier.Verify for every token it refuses.
var ErrInvalidToken = errors.New("server: invalid token")

// ErrTokenRevoked is wrapped (together with ErrInvalidToken) when a token's
// login session or subject was revoked.
var ErrTokenRevoked = errors.New("server: token revoked")

// DefaultAlgorithms is the JWS algorithm allow-list verifiers use when
// VerifierConfig.Algorithms is empty. It never contains "none" or an HMAC
// algorithm.
var DefaultAlgorithms = []string{"EdDSA", "ES256", "RS256"}

// DefaultLeeway is the clock skew verifiers allow on exp, nbf and iat when
// VerifierConfig.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// VerifierConfig configures a Verifier. Exactly one of JWKS and JWKSURL is
// required.
type VerifierConfig struct {
	// Issuer is the required "iss". Required.
	Issuer string
	// Audience, when set, must be one of the token's "aud" values. Empty
	// means "aud" is not checked.
	Audience string
	// JWKS is a static JSON Web Key Set document (e.g. SelfSigned.JWKS()).
	JWKS []byte
	// JWKSURL is a remote JWKS fetched with keyfunc/v3 on first use,
	// refreshed hourly and on unknown key IDs (rate-limited).
	JWKSURL string
	// HTTPClient fetches JWKSURL. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Algorithms is the allow-list of JWS "alg" values. Empty means
	// DefaultAlgorithms. "none" and HMAC algorithms are refused.
	Algorithms []string
	// Leeway is the allowed clock skew. Zero means DefaultLeeway.
	Leeway time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Check, when set, is called with the verified header and claims and
	// may refuse the token by returning an error.
	Check func(header, claims map[string]any) error
	// State, when set, is consulted for revocation markers (see
	// Handler.RevokeSubject): it costs up to two StateStore Gets per token,
	// one for the "sid" claim and one for "sub". Nil skips the check.
	State StateStore
}

// Claims are the verified claims of an access token.
type Claims struct {
	Issuer    string    // "iss"
	Subject   string    // "sub": the user's stable ID
	Audience  []string  // "aud", empty when the token has none
	Expiry    time.Time // "exp"
	IssuedAt  time.Time // "iat", zero when absent
	Email     string    // "email", empty when absent
	Name      string    // "name", empty when absent
	SessionID string    // "sid"
	ClientID  string    // "client_id", else "azp"
	// Raw holds all claims as decoded from JSON.
	Raw map[string]any
}

// Verifier verifies access tokens the way a careful client does. It is safe
// for concurrent use. Call Close when done with a Verifier that uses JWKSURL.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser

	mu     sync.Mutex
	keys   keyfunc.Keyfunc
	ctx    context.Context
	cancel context.CancelFunc
}

// NewVerifier returns a Verifier; configuration errors wrap ErrInvalidConfig.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: VerifierConfig.Issuer is required", ErrInvalidConfig)
	}
	if (len(cfg.JWKS) == 0) == (cfg.JWKSURL == "") {
		return nil, fmt.Errorf("%w: exactly one of VerifierConfig.JWKS and JWKSURL is required", ErrInvalidConfig)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	for _, a := range cfg.Algorithms {
		if a == "none" || strings.HasPrefix(a, "HS") || jwt.GetSigningMethod(a) == nil {
			return nil, fmt.Errorf("%w: algorithm %q not allowed", ErrInvalidConfig, a)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	if len(cfg.JWKS) > 0 {
		k, err := keyfunc.NewJWKSetJSON(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("%w: JWKS: %w", ErrInvalidConfig, err)
		}
		v.keys = k
	}
	return v, nil
}

// Close stops the background refresh of a remote JWKS.
func (v *Verifier) Close() error {
	v.cancel()
	return nil
}

func (v *Verifier) keyfunc() (keyfunc.Keyfunc, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil {
		return v.keys, nil
	}
	client := v.cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	k, err := keyfunc.NewDefaultOverrideCtx(v.ctx, []string{v.cfg.JWKSURL}, keyfunc.Override{
		Client:      client,
		HTTPTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("server: JWKS %s: %w", v.cfg.JWKSURL, err)
	}
	v.keys = k
	return k, nil
}

// Verify checks raw's key ID ("kid" header, required), signature,
// algorithm, issuer, audience, expiry (required), not-before and issued-at,
// the Check hook and the revocation markers, and returns its claims. Every
// refusal wraps ErrInvalidToken; the message never contains the token or
// unverified claims.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	kf, err := v.keyfunc()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	keyFor := kf.KeyfuncCtx(ctx)
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, mc, func(t *jwt.Token) (any, error) {
		// Without a kid, keyfunc would try every key in the set; tokens
		// name their key.
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("no kid header")
		}
		return keyFor(t)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, safeJWTError(err))
	}
	if !tok.Valid {
		return nil, ErrInvalidToken
	}
	if v.cfg.Check != nil {
		if err := v.cfg.Check(tok.Header, mc); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
	}
	c := claimsFrom(mc)
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	if v.cfg.State != nil {
		revoked, err := isRevoked(ctx, v.cfg.State, c.SessionID, "", c.Subject, c.IssuedAt)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		if revoked {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenRevoked)
		}
	}
	return c, nil
}

// safeJWTError names the failed check without echoing token contents.
func safeJWTError(err error) string {
	for _, e := range []error{jwt.ErrTokenMalformed, jwt.ErrTokenUnverifiable, jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued, jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenInvalidAudience, jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenInvalidClaims} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "verification failed"
}

func claimsFrom(mc jwt.MapClaims) *Claims {
	str := func(k string) string { s, _ := mc[k].(string); return s }
	c := &Claims{Issuer: str("iss"), Subject: str("sub"), Email: str("email"), Name: str("name"),
		SessionID: str("sid"), ClientID: str("client_id"), Raw: mc}
	if c.ClientID == "" {
		c.ClientID = str("azp")
	}
	if aud, err := mc.GetAudience(); err == nil {
		c.Audience = aud
	}
	if t, err := mc.GetExpirationTime(); err == nil && t != nil {
		c.Expiry = t.Time
	}
	if t, err := mc.GetIssuedAt(); err == nil && t != nil {
		c.IssuedAt = t.Time
	}
	return c
}

type claimsKey struct{}

// ClaimsFromContext returns the claims RequireToken put into a request's
// context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// ContextWithClaims returns ctx carrying c, as RequireToken does; it is
// useful in tests of handlers behind RequireToken.
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// RequireToken wraps next so that it only runs for requests with a valid
// "Authorization: Bearer" token; the claims are in the request's context
// (ClaimsFromContext). Other requests get 401 with a WWW-Authenticate header
// (RFC 6750 §3) and a body that does not describe the token.
func (v *Verifier) RequireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			writeUnauthorized(w, "")
			return
		}
		c, err := v.Verify(r.Context(), raw)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeUnauthorized(w, "invalid_token")
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), c)))
	})
}

func writeUnauthorized(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	if code == "" {
		code = "unauthorized"
	}
	fmt.Fprintf(w, "{\"error\":%s}\n", strconv.Quote(code))
}

func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}
