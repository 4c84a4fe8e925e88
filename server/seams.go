package server

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Identity is the browser user an Authenticator signed in.
type Identity struct {
	// Subject is the stable user ID ("sub" of minted tokens). Required.
	Subject string
	// Email and Name are for display on the consent page, in tokens
	// minted by SelfSigned, and in ID tokens and userinfo answers (the
	// "email" and "name" claims, OpenID Connect Core §5.1); either may be
	// empty.
	Email string
	Name  string
	// EmailVerified reports that the identity layer verified that the user
	// controls Email ("email_verified"). False for DevAuthenticator, which
	// believes any address.
	EmailVerified bool
	// AuthTime is when the user last actually authenticated to the
	// identity layer (typed a password, used a passkey), as opposed to a
	// remembered sign-in being reused. Zero means the Authenticator does
	// not know. It is the ID token's "auth_time" (else the time of the
	// handler's sign-in step), and what the handler checks against a
	// client's max_age or prompt=login (SignInPrompt.AuthenticatedAfter).
	AuthTime time.Time
	// SessionID is the identity layer's own session (a Clerk session ID),
	// empty when the identity layer has none. Minters use it to mint and to
	// decide whether a refresh may mint again.
	SessionID string
	// Claims are extra claims a minter may copy into tokens. May be nil.
	Claims map[string]any
}

// SignInPrompt is what the handler tells an Authenticator about the pending
// authorization it must identify the browser user for.
type SignInPrompt struct {
	// ClientName is the registered display name of the CLI asking.
	ClientName string
	// Action is the URL (path and query) that sign-in forms must POST to,
	// and that redirect-based sign-ins must come back to.
	Action string
	// CSRFField and CSRFToken are the form field name and value every POST
	// to Action must carry; the handler rejects POSTs without them before
	// calling the Authenticator.
	CSRFField string
	CSRFToken string
	// Nonce is the CSP nonce for inline <script> and <style> elements on a
	// page the Authenticator renders. Before calling Authenticate the
	// handler has set the page headers on the response (a CSP
	// "default-src 'none'; style-src 'nonce-…'; base-uri 'none';
	// frame-ancestors 'none'", X-Frame-Options DENY, Cache-Control
	// no-store, Referrer-Policy no-referrer, nosniff). An Authenticator that
	// needs more, such as a third-party script origin, may replace the
	// Content-Security-Policy header before writing; it must keep
	// frame-ancestors 'none'.
	Nonce string
	// Render writes one of the handler's HTML pages (by template file name)
	// in the handler's layout, with the handler's templates
	// (Config.Templates), brand, and the Nonce: "signin.html" with a
	// SignInPage (start from SignInPrompt.SignInPage), "error.html" with an
	// ErrorPage, or a page of the application's own from Config.Templates.
	// It keeps the response headers set before Authenticate (including a
	// Content-Security-Policy the Authenticator replaced). On success it has
	// written the status and the page, and the Authenticator returns
	// ErrResponded. A name that is no page gives an error wrapping
	// ErrUnknownPage, and data the template cannot read an error too; then
	// nothing is written, and an Authenticator that returns the error gets
	// a server error page. Nil when the prompt was not made by a Handler (in
	// tests of an Authenticator alone).
	Render func(w http.ResponseWriter, status int, page string, data any) error
	// AuthenticatedAfter, when not zero, is the oldest authentication the
	// client accepts (OpenID Connect Core §3.1.2.1: prompt=login asks for
	// one at or after the authorization request, max_age for one at most
	// that many seconds old). An Authenticator that remembers an older
	// sign-in must ask the user to authenticate again and report it in
	// Identity.AuthTime; the handler answers the client login_required
	// when the returned Identity's AuthTime is zero or earlier.
	AuthenticatedAfter time.Time
}

// Authenticator finds out who the browser user is. It is the seam between the
// handler and an identity layer: DevAuthenticator for development,
// server/clerk for Clerk, or the application's own sign-in (see the
// Authenticator example, which takes the user from the app's session
// cookie).
//
// # When it is called
//
// The handler calls Authenticate for the GET and POST requests to the
// sign-in step of one pending authorization (SignInPrompt.Action, which is
// SignInPath?req=ID), until it returns an Identity. Before the call the
// handler has checked that the request belongs to a live authorization
// started in this browser, and for a POST, parsed the form (r.PostForm, at
// most 64 KiB) and checked its CSRF token; it has also set the page headers
// (see SignInPrompt.Nonce). A GET carries no CSRF token: on a GET,
// Authenticate may read cookies and show a page, but must not act on query
// parameters that sign someone in.
//
// # What it returns
//
//   - An Identity: the handler stores it with the pending authorization,
//     never calls Authenticate again for that authorization, and shows the
//     consent page (after a POST, through a 303 redirect to Action). The
//     Authenticator may have set headers such as cookies, but must not have
//     written a status or a body.
//   - ErrResponded: the Authenticator wrote the whole response itself — a
//     sign-in page (SignInPrompt.Render), or a redirect to the app's own
//     sign-in that comes back to Action afterwards. The authorization stays
//     pending (for Config.PendingTTL from its start), and the browser comes
//     back to Action with a GET or a POST. To ask again after a wrong
//     password, render the form again with SignInPage.Error set and return
//     ErrResponded.
//   - Any other error: the handler shows a "Sign-in failed" page with the
//     error's message and a "Try again" link to Action, since the
//     authorization is still valid. The message must be safe to show and
//     must not contain credentials. An error from SignInPrompt.Render
//     (ErrUnknownPage, a template error) is shown as a server error instead
//     and logged.
//
// Implementations must be safe for concurrent use and keep no per-request
// state in memory between calls: the handler may run on several instances,
// and the next request of the same sign-in may reach another one.
type Authenticator interface {
	Authenticate(w http.ResponseWriter, r *http.Request, p SignInPrompt) (*Identity, error)
}

// ErrResponded is returned by an Authenticator that wrote the response itself.
var ErrResponded = errors.New("server: authenticator wrote the response")

// Grant is what a Minter is asked to turn into an access token.
type Grant struct {
	// Identity is the browser user the Authenticator signed in.
	Identity Identity
	// ClientID is the OAuth client the token is for.
	ClientID string
	// LoginSessionID identifies the keyloop login session (one sign-in and
	// all refreshes after it); tokens may carry it as "sid".
	LoginSessionID string
	// AuthTime is when the user signed in in the browser.
	AuthTime time.Time
	// Refresh is true when the token is minted for a refresh_token grant
	// rather than right after the browser sign-in.
	Refresh bool
	// Scopes are the scopes granted for this token, among "openid",
	// "profile", "email" and "offline_access" (the handler ignores others,
	// OpenID Connect Core §3.1.2.1); empty when the client asked for none.
	// SelfSigned puts them in the "scope" claim (RFC 9068 §2.2.3).
	Scopes []string
}

// MintedToken is an access token a Minter produced.
type MintedToken struct {
	// AccessToken is the signed JWT.
	AccessToken string
	// Expiry is the token's "exp".
	Expiry time.Time
}

// KeyInfo tells clients how to verify minted tokens; the handler publishes it
// in its metadata.
type KeyInfo struct {
	// JWKSURI is where the access-token signing keys are, when they are
	// not the handler's own: the handler publishes it as
	// "access_token_jwks_uri" in its metadata, next to "jwks_uri" (always
	// the handler's own JWKSPath, which holds the ID-token keys). Empty
	// means the handler's own JWKS endpoint, which then also serves the
	// Minter's keys (the minter must implement KeySetPublisher).
	JWKSURI string
	// TokenIssuer is the "iss" of minted tokens. Empty means the handler's
	// issuer.
	TokenIssuer string
	// Audience is the "aud" of minted tokens, if any.
	Audience string
}

// Minter turns a signed-in identity into a signed access token (a JWT).
//
// Mint must be safe for concurrent use. When it refuses a refresh (the user
// was deleted, the identity layer's session ended) it returns an error
// wrapping ErrRefreshRefused; the handler answers invalid_grant and the CLI
// asks the user to sign in again.
type Minter interface {
	Mint(ctx context.Context, g Grant) (*MintedToken, error)
	KeyInfo() KeyInfo
}

// KeySetPublisher is implemented by minters whose public keys the handler
// serves at its own JWKS endpoint.
type KeySetPublisher interface {
	// JWKS returns the JSON Web Key Set document of the public keys.
	JWKS() ([]byte, error)
}

// ErrRefreshRefused is wrapped by a Minter that will not mint for the grant's
// identity any more (on refresh, or at the code exchange when the identity
// layer's session ended after consent). The handler answers invalid_grant.
var ErrRefreshRefused = errors.New("server: refresh refused")

// StateStore keeps the handler's short-lived shared state: pending
// authorizations, single-use codes, login sessions, rotated refresh tokens,
// revocation markers. Running several instances of the handler needs a
// shared StateStore (NewMemoryStateStore and NewFileStateStore only serve one
// process; server/redisstate serves many).
//
// The contract, checked by the conformance suite in server/statetest:
//   - Keys are non-empty strings (the handler's are printable ASCII, at most
//     a few hundred bytes); values are opaque bytes, possibly empty, stored
//     and returned unchanged. Implementations must not log values, and must
//     not keep or modify the caller's slices (they copy).
//   - Every record has a TTL: it is gone once its TTL has passed. A ttl ≤ 0
//     given to Put or CompareAndSwap removes the key instead of storing.
//     Expired records are never returned, by any method.
//   - Take and CompareAndSwap are atomic with respect to every other method,
//     across all processes sharing the store.
//   - Absent and expired keys are reported with an error wrapping
//     ErrStateNotFound, and only they: a store that cannot answer (down,
//     slow, unreadable) returns another error, preferably wrapping
//     ErrStateUnavailable, never ErrStateNotFound.
//   - A ctx that is already done gets an error wrapping ctx.Err() and
//     changes nothing. Implementations bound each call's duration.
//
// Implementations must be safe for concurrent use.
type StateStore interface {
	// Put stores value under key for ttl, replacing any previous value.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Get returns the value under key, or an error wrapping ErrStateNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Take returns the value under key and deletes it in one atomic step:
	// of several concurrent Takes of one key, exactly one gets the value and
	// the others get ErrStateNotFound.
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// CompareAndSwap stores value under key for ttl (a ttl ≤ 0 removes the
	// key) if and only if the key currently holds exactly old, and reports
	// whether it did, in one atomic step. A nil old means "only if the key
	// is absent or expired" (put-if-absent); a non-nil empty old matches a
	// stored empty value, not an absent key. Of several concurrent
	// CompareAndSwaps from the same old value, exactly one swaps. A value
	// that does not match is not an error: swapped is false and err nil.
	CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (swapped bool, err error)
}

// StatePut is one record of StateBatchPutter.PutBatch: Value under Key
// for TTL (a TTL ≤ 0 removes Key), as StateStore.Put takes them.
type StatePut struct {
	// Key is the record's key, as in StateStore.Put.
	Key string
	// Value is the record's bytes, as in StateStore.Put.
	Value []byte
	// TTL is how long the record lives; ≤ 0 removes Key.
	TTL time.Duration
}

// StateBatchPutter is an optional interface of a StateStore that can store
// several records in one step: one disk commit, one network round trip.
// Where the handler stores several records at once (a new refresh token
// and its reuse marker; those and a code's used-marker) it calls PutBatch
// when the StateStore has it, and Put for each record in turn otherwise.
//
// PutBatch stores every record, as Put would, or on error none of them; a
// ctx that is already done changes nothing. Of records with the same key
// the last one counts.
type StateBatchPutter interface {
	PutBatch(ctx context.Context, puts []StatePut) error
}

// StateSwapPutter is an optional interface of a StateStore that can make a
// compare-and-swap and the records that go with it one step: one disk
// commit, one network round trip. The handler's grants end in such a step:
// a code exchange removes the code (a compare-and-delete of the record it
// read) and stores the new refresh token, its reuse marker and the code's
// used-marker; a refresh rotates the presented token and stores its
// successor. With a StateSwapPutter that is one SwapAndPut; otherwise the
// records are stored first (PutBatch or Put), then the code is taken or
// the token swapped, and the records are deleted again if that fails.
//
// SwapAndPut does what CompareAndSwap(ctx, key, old, value, ttl) does and,
// if and only if it swapped, stores puts as PutBatch does, in one atomic
// step: either the swap and every record, or (swapped false, or an error)
// no change at all. A ctx that is already done changes nothing.
type StateSwapPutter interface {
	SwapAndPut(ctx context.Context, key string, old, value []byte, ttl time.Duration, puts []StatePut) (swapped bool, err error)
}

// ErrStateNotFound is wrapped by StateStore methods when a key is absent or
// expired.
var ErrStateNotFound = errors.New("server: state not found")

// ErrStateUnavailable is wrapped by StateStore implementations when the
// store could not be reached or did not answer in time (a network failure,
// a timeout, a server that refuses commands). The handler answers
// temporarily_unavailable (HTTP 503 with Retry-After) to any StateStore
// error other than ErrStateNotFound; this sentinel lets applications tell
// an outage from other failures in their own code and logs.
var ErrStateUnavailable = errors.New("server: state store unavailable")
