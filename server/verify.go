package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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

// VerifierConfig configures a Verifier. Exactly one of JWKS, JWKSURL and
// KeySet is required.
type VerifierConfig struct {
	// Issuer is the required "iss". Required.
	Issuer string
	// Audience, when set, must be one of the token's "aud" values. Empty
	// means "aud" is not checked.
	Audience string
	// JWKS is a static JSON Web Key Set document (e.g. SelfSigned.JWKS()).
	JWKS []byte
	// KeySet is a live key set in this process (SelfSigned.KeySet()): keys
	// added or retired by KeySet.Reload count from the next Verify on. A
	// token's "alg" must be its key's algorithm.
	KeySet *KeySet
	// JWKSURL is a remote JWKS, fetched on first use and refreshed in the
	// background once older than JWKSRefreshInterval, and on a token whose
	// key ID it lacks (at most every JWKSUnknownKIDInterval). When the
	// endpoint fails, Verify returns an error wrapping ErrKeysUnavailable
	// after waiting at most JWKSFetchTimeout, and fetches are retried with a
	// backoff from 1 s up to JWKSRetryMax, so a recovered endpoint is seen
	// within seconds; keys fetched before keep verifying meanwhile.
	JWKSURL string
	// HTTPClient fetches JWKSURL. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// JWKSFetchTimeout bounds one fetch of JWKSURL, and so how long a
	// Verify waits for keys. Zero means DefaultJWKSFetchTimeout (5 s).
	JWKSFetchTimeout time.Duration
	// JWKSRefreshInterval is the age after which a fetched JWKS is
	// refreshed. Zero means DefaultJWKSRefreshInterval (5 minutes).
	JWKSRefreshInterval time.Duration
	// JWKSUnknownKIDInterval is the least time between two fetches caused by
	// unknown key IDs. Zero means DefaultJWKSUnknownKIDInterval (10 s).
	JWKSUnknownKIDInterval time.Duration
	// JWKSRetryMax caps the backoff after failed fetches. Zero means
	// DefaultJWKSRetryMax (10 s).
	JWKSRetryMax time.Duration
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
	// Handler.RevokeSubject): one Get for the "sid" claim and one for "sub",
	// cached as RevocationCacheTTL says. Nil skips the check.
	State StateStore
	// RevocationCacheTTL bounds how long Verify trusts what it last read
	// from State about one login session ("sid") or subject ("sub"): a
	// revocation recorded by another process (another replica's logout or
	// reuse detection, RevokeSubject, a Clerk webhook) is honoured within
	// this time, measured on the system clock; the Handler that records a
	// revocation honours it at once. Each "sid" and "sub" then costs at most
	// one State Get per RevocationCacheTTL, however many requests carry it,
	// and concurrent misses share one Get; the cache holds at most 65,536
	// entries. Zero means DefaultRevocationCacheTTL (5 s); negative means
	// no cache (every Verify reads State: up to two Gets).
	RevocationCacheTTL time.Duration
	// RevocationFailOpen chooses what Verify does about revocation when
	// State cannot answer. (After a failed lookup, for a second, lookups
	// give State at most 100 ms, so an outage does not cost every request
	// a full store timeout, and recovery is seen at once.)
	// Signatures, issuer, audience and expiry are checked either way, and
	// a revocation Verify has already seen is honoured either way.
	//   - false (the default, fail closed): a token whose revocation status
	//     is not known from the last RevocationCacheTTL is refused with an
	//     error wrapping ErrRevocationUnavailable; RequireToken answers 503
	//     with Retry-After. No revoked token is accepted, and the API is
	//     down while State is.
	//   - true (fail open): such a token is accepted on its last known
	//     status, or as not revoked when none is known. The API stays up;
	//     tokens revoked during the outage, or revoked before it but not
	//     yet seen by this process, are accepted until State answers again.
	RevocationFailOpen bool
	// Logger receives a line when revocation lookups start failing (at
	// most one a second). Nil means no logging.
	Logger *slog.Logger
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
	keys   keySource

	revocations *revocations // nil without State
}

// NewVerifier returns a Verifier; configuration errors wrap ErrInvalidConfig.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: VerifierConfig.Issuer is required", ErrInvalidConfig)
	}
	if n := btoi(len(cfg.JWKS) > 0) + btoi(cfg.JWKSURL != "") + btoi(cfg.KeySet != nil); n != 1 {
		return nil, fmt.Errorf("%w: exactly one of VerifierConfig.JWKS, JWKSURL and KeySet is required", ErrInvalidConfig)
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
	if cfg.State != nil {
		v.revocations = newRevocations(cfg.State, cfg.RevocationCacheTTL, cfg.RevocationFailOpen, cfg.Logger)
	}
	switch {
	case len(cfg.JWKS) > 0:
		k, err := keyfunc.NewJWKSetJSON(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("%w: JWKS: %w", ErrInvalidConfig, err)
		}
		v.keys = staticKeys{k}
	case cfg.KeySet != nil:
		v.keys = liveKeys{cfg.KeySet}
	default:
		v.keys = newRemoteKeys(cfg)
	}
	return v, nil
}

// Close releases the Verifier's resources. A remote JWKS is fetched only on
// demand, so there is nothing to stop; Close exists so callers need not
// know which key source a Verifier uses.
func (v *Verifier) Close() error { return nil }

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Verify checks raw's key ID ("kid" header, required), signature,
// algorithm, issuer, audience, expiry (required), not-before and issued-at,
// the Check hook and the revocation markers, and returns its claims. Every
// refusal wraps ErrInvalidToken; the message never contains the token or
// unverified claims. When the keys cannot be fetched (JWKSURL down), the
// error wraps ErrKeysUnavailable instead: the token was not judged. When the
// token passed every other check but its revocation status cannot be read
// (see VerifierConfig.RevocationFailOpen), the error wraps
// ErrRevocationUnavailable instead.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	return v.verify(ctx, raw, true)
}

// verify is Verify, with the revocation check only when revocation is set
// (the revocation endpoint verifies tokens it is about to revoke).
func (v *Verifier) verify(ctx context.Context, raw string, revocation bool) (*Claims, error) {
	keyFor := v.keys.keyfunc(ctx)
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, mc, func(t *jwt.Token) (any, error) {
		// Without a kid, keyfunc would try every key in the set; tokens
		// name their key.
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("no kid header")
		}
		return keyFor(t)
	})
	if ku := (*keysUnavailableError)(nil); errors.As(err, &ku) {
		return nil, ku
	}
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
	if revocation && v.revocations != nil {
		revoked, err := v.revocations.revoked(ctx, c.SessionID, c.Subject, c.IssuedAt)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRevocationUnavailable, err)
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
// (RFC 6750 §3) and a body that does not describe the token, except when the
// verification keys cannot be fetched (ErrKeysUnavailable) or the token's
// revocation status cannot be read (ErrRevocationUnavailable, see
// VerifierConfig.RevocationFailOpen): then 503 "temporarily_unavailable" with
// Retry-After.
func (v *Verifier) RequireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer`)
			writeUnauthorized(w, "")
			return
		}
		c, err := v.Verify(r.Context(), raw)
		if errors.Is(err, ErrKeysUnavailable) {
			writeKeysUnavailable(w)
			return
		}
		if errors.Is(err, ErrRevocationUnavailable) {
			writeRevocationUnavailable(w)
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeUnauthorized(w, "invalid_token")
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), c)))
	})
}

// writeKeysUnavailable answers a request whose token could not be checked
// because the verification keys are unavailable: 503 with Retry-After, so
// the client retries instead of discarding a token that may be valid.
func writeKeysUnavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", retryAfter)
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"the token's signing keys cannot be fetched right now"}`+"\n")
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
