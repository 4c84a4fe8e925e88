package clilogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyloop/keyloop/tokenstore"
)

// maxRefreshWindow caps the refresh window: a token is refreshed when less
// than a quarter of its lifetime, and at most this long, remains.
const maxRefreshWindow = 24 * time.Hour

// unknownLifetimeWindow is the refresh window of a record whose IssuedAt is
// unknown (so its lifetime is unknown).
const unknownLifetimeWindow = 5 * time.Minute

// envToken returns the TokenEnv override with surrounding white space
// removed ("$(cat file)" leaves a newline), or "" when it is unset or only
// white space.
func (c *Client) envToken() string {
	if c.cfg.TokenEnv == "" {
		return ""
	}
	return strings.TrimSpace(os.Getenv(c.cfg.TokenEnv))
}

// Status reports the stored login without refreshing it and without network
// I/O; ErrNotLoggedIn when there is none. A login the server refused to
// refresh is returned with Session.Ended set (and no error). When the store
// cannot be read (a keychain that cannot be reached), the error wraps
// ErrStorage: whether a login exists is unknown.
//
// With the TokenEnv override set, it describes that token instead: Location
// is KindEnv, Issuer is the configured issuer, and Subject, Account and
// Expiry are decoded from the token without verifying it (display only; a
// token that is not a JWT leaves them empty).
func (c *Client) Status(ctx context.Context) (*Session, error) {
	if v := c.envToken(); v != "" {
		cl, _ := unverifiedClaims(v)
		return &Session{
			Subject: cl.Subject, Account: cl.Account, Issuer: c.cfg.Issuer, Expiry: cl.Expiry,
			Location: tokenstore.Location{Kind: tokenstore.KindEnv},
		}, nil
	}
	st, err := c.storeFor()
	if err != nil {
		return nil, err
	}
	rec, err := c.load(ctx, st)
	if err != nil {
		return nil, err
	}
	return sessionOf(rec, c.locate(ctx, st)), nil
}

// Token returns a valid access token, refreshing it first when less than a
// quarter of its lifetime (at most 24 h; 5 minutes when the issue time is
// unknown) remains. The returned token carries no refresh token and may be
// kept by the caller; it must not be modified.
//
// A refresh happens under the store's lock (tokenstore.Locker) and re-reads
// the stored login once the lock is held, so concurrent callers, in this
// process or in others sharing the store, make one refresh between them.
// The server's answer is saved before anything else can fail: the rotated
// refresh token first, with the new access token marked unverified; then
// the token is verified like at login and saved as the login's token. The
// token request itself goes on for up to 10 seconds after ctx ends, so an
// answer the server committed to is not lost to a Ctrl+C. A verification
// that fails (the server's keys cannot be fetched) keeps the new refresh
// token; the next call verifies again, or refreshes with the new refresh
// token, never with the spent one.
//
// When the server refuses the refresh token (invalid_grant: revoked, used
// twice, past its lifetime), the login is marked ended in the store, no
// process sends that refresh token again, and the error wraps
// ErrLoginEnded and ErrLoginRequired. When a refresh fails for another
// reason (the server does not answer) and the old token is still valid,
// Token returns the old token and reports the failure to
// Config.OnRefreshError; when the old token has expired, the error wraps
// ErrRefreshFailed and the cause (an *UnreachableError names the endpoint),
// and the login is kept for the next try. A store that takes no writes (a
// read-only directory, a keychain that refuses writes) is found out before
// the refresh token is spent, and is such a failure; the error wraps
// ErrStorage. When no login is stored the error
// wraps ErrNotLoggedIn and ErrLoginRequired and names the command to run;
// when the store cannot be read it wraps ErrStorage. With the TokenEnv
// override set, Token returns that token, trimmed of surrounding white
// space.
//
// Within one Client, a token outside its refresh window is served from memory
// without reading the store again; a login deleted by another process is
// noticed at the next refresh.
func (c *Client) Token(ctx context.Context) (*oauth2.Token, error) {
	if v := c.envToken(); v != "" {
		return &oauth2.Token{AccessToken: v, TokenType: "Bearer"}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("clilogin: token: %w", err)
	}
	if rec := c.getCached(); rec != nil && rec.Ended == nil && rec.Pending == nil {
		now := c.now()
		if !c.inWindow(rec, now) || (c.inBackoff(now) && valid(rec, now)) {
			return oauthToken(rec), nil
		}
	}
	return c.token(ctx, "")
}

// inWindow reports whether rec is due for a refresh at now. A token whose
// expiry is unknown (an opaque one without expires_in) never is: it is
// refreshed when an API refuses it (see Transport).
func (c *Client) inWindow(rec *tokenstore.Record, now time.Time) bool {
	if rec.Expiry.IsZero() {
		return false
	}
	window := unknownLifetimeWindow
	if !rec.IssuedAt.IsZero() && rec.Expiry.After(rec.IssuedAt) {
		window = min(rec.Expiry.Sub(rec.IssuedAt)/4, maxRefreshWindow)
	}
	return rec.Expiry.Sub(now) < window
}

func (c *Client) inBackoff(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Before(c.retryRefresh)
}

func (c *Client) setBackoff(until time.Time) {
	c.mu.Lock()
	c.retryRefresh = until
	c.mu.Unlock()
}

// valid reports whether rec's access token may be used at now: it has one,
// and it has not expired (an unknown expiry counts as valid).
func valid(rec *tokenstore.Record, now time.Time) bool {
	return rec.AccessToken != "" && (rec.Expiry.IsZero() || now.Before(rec.Expiry))
}

// oauthToken is rec's access token for callers; a zero Expiry (unknown)
// means, as in x/oauth2, that it does not expire as far as the client
// knows.
func oauthToken(rec *tokenstore.Record) *oauth2.Token {
	typ := rec.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return &oauth2.Token{AccessToken: rec.AccessToken.Reveal(), TokenType: typ, Expiry: rec.Expiry}
}

// due reports whether rec needs work before its token is served: a pending
// token to verify, or a refresh (in the window, or, when stale is not
// empty, because the API refused stale and rec still holds it).
func (c *Client) due(rec *tokenstore.Record, now time.Time, stale string) bool {
	switch {
	case rec.Ended != nil:
		return false
	case rec.Pending != nil:
		return true
	case !canRefresh(rec):
		return false
	case stale != "":
		return rec.AccessToken.Reveal() == stale
	}
	return c.inWindow(rec, now)
}

// token loads the stored login and renews it when due (see due).
func (c *Client) token(ctx context.Context, stale string) (*oauth2.Token, error) {
	st, err := c.storeFor()
	if err != nil {
		return nil, err
	}
	rec, err := c.load(ctx, st)
	if err != nil {
		return nil, c.loadErr(err)
	}
	now := c.now()
	if !c.due(rec, now, stale) || (c.inBackoff(now) && valid(rec, now)) {
		return c.serve(rec, now)
	}

	select {
	case c.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("clilogin: wait for a token refresh: %w", ctx.Err())
	}
	defer func() { <-c.refreshSem }()
	unlock, err := c.lock(ctx, st)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return c.keepOld(rec, now, err) // no refresh without the lock
	}
	defer unlock()
	// Another goroutine or process may have refreshed, or found the login
	// ended, while we waited.
	if rec, err = c.load(ctx, st); err != nil {
		return nil, c.loadErr(err)
	}
	now = c.now()
	if !c.due(rec, now, stale) {
		return c.serve(rec, now)
	}
	fresh, err := c.renew(ctx, st, rec)
	if err == nil {
		c.setBackoff(time.Time{})
		return oauthToken(fresh), nil
	}
	if errors.Is(err, ErrLoginEnded) {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("clilogin: refresh the token: %w", ctx.Err())
	}
	return c.keepOld(rec, now, err)
}

// keepOld follows a refresh that failed (err) for a reason that does not
// end the login: rec's token while it is valid, with err reported to
// Config.OnRefreshError, else refreshFailed's error.
func (c *Client) keepOld(rec *tokenstore.Record, now time.Time, err error) (*oauth2.Token, error) {
	c.setBackoff(now.Add(refreshRetryDelay))
	if valid(rec, now) {
		c.setCached(rec)
		if c.cfg.OnRefreshError != nil {
			c.cfg.OnRefreshError(&userError{msg: "clilogin: refresh failed: " + stripPrefixes(err.Error()),
				user: Message(err), errs: []error{ErrRefreshFailed, err}})
		}
		return oauthToken(rec), nil
	}
	return nil, c.refreshFailed(err)
}

// refreshFailed is Token's error when the token expired and could not be
// renewed for a reason that does not end the login.
func (c *Client) refreshFailed(cause error) error {
	then := " Your login is kept; try again once that is fixed."
	if strings.Contains(Message(cause), "try again") {
		then = " Your login is kept."
	}
	return &userError{
		msg:  "clilogin: the stored token expired and could not be refreshed: " + stripPrefixes(cause.Error()),
		user: "The stored token expired and could not be refreshed. " + Message(cause) + then,
		errs: []error{ErrRefreshFailed, cause},
	}
}

// serve returns rec's token when it is still valid, else an error saying
// what the user must do.
func (c *Client) serve(rec *tokenstore.Record, now time.Time) (*oauth2.Token, error) {
	if rec.Ended != nil {
		return nil, c.endedErr(rec)
	}
	if !valid(rec, now) {
		return nil, c.loginRequired("the stored token expired and the login cannot be refreshed (the server issued no refresh token)", nil)
	}
	c.setCached(rec)
	return oauthToken(rec), nil
}

func (c *Client) loadErr(err error) error {
	if errors.Is(err, tokenstore.ErrCorrupt) {
		return c.loginRequired("the stored login cannot be read", err)
	}
	if errors.Is(err, ErrNotLoggedIn) {
		return &userError{
			msg:  fmt.Sprintf("clilogin: not logged in to %s; run `%s`", c.cfg.Issuer, c.loginCommand()),
			user: fmt.Sprintf("You are not logged in to %s. Run `%s` to sign in.", c.cfg.Issuer, c.loginCommand()),
			errs: []error{ErrNotLoggedIn, ErrLoginRequired},
		}
	}
	return err
}

func canRefresh(rec *tokenstore.Record) bool {
	return rec.RefreshToken != "" && rec.TokenEndpoint != "" && rec.Ended == nil
}

// renew brings rec's token up to date under the store's lock: it verifies a
// pending token, or refreshes. It returns the record now stored.
func (c *Client) renew(ctx context.Context, st tokenstore.Store, rec *tokenstore.Record) (*tokenstore.Record, error) {
	if rec.Pending != nil {
		fresh, err := c.promote(ctx, st, rec)
		if err == nil || !errors.Is(err, ErrInvalidToken) || !canRefresh(rec) {
			return fresh, err
		}
		// The pending token itself is bad (expired while waiting, signed
		// with a key since retired): refresh with the refresh token that
		// came with it.
		cp := *rec
		cp.Pending = nil
		rec = &cp
	}
	// Spend the refresh token only when its answer can be kept: writing the
	// login back first shows the store takes writes. An answer it refused
	// would be lost to the next process, which would present the spent
	// token for the server to take as a reuse.
	if err := c.save(ctx, st, rec); err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rec.RefreshToken.Reveal()}}
	resp, err := c.postToken(ctx, rec.TokenEndpoint, form, c.recordAuth(rec.TokenAuth))
	if err != nil {
		var se *ServerError
		var ue *UnreachableError
		switch {
		case errors.As(err, &se) && se.Code == "invalid_grant":
			return nil, c.markEnded(ctx, st, rec, se)
		case errors.As(err, &ue) && ue.mayHaveArrived:
			// The server may have rotated the token without our seeing
			// the answer; remember it, to explain a refusal later.
			lost := *rec
			lost.LostRefreshAt = c.now()
			sctx, cancel := finishCtx(ctx)
			_ = c.save(sctx, st, &lost)
			cancel()
		}
		return nil, err
	}
	// The server answered: it has rotated the refresh token, so the stored
	// one is spent. Save the answer before anything else can fail.
	next := *rec
	next.LostRefreshAt = time.Time{}
	if resp.RefreshToken != "" {
		next.RefreshToken = tokenstore.Secret(resp.RefreshToken)
	}
	// A refresh answer without a refresh token leaves the current one
	// valid (RFC 6749 §6), and one without an ID token the current ID
	// token (OpenID Connect Core §12.2).
	next.Pending = &tokenstore.Pending{AccessToken: tokenstore.Secret(resp.AccessToken), TokenType: resp.TokenType,
		ReceivedAt: c.now(), IDToken: tokenstore.Secret(resp.IDToken)}
	if resp.ExpiresIn > 0 {
		next.Pending.Expiry = c.now().Add(resp.ExpiresIn)
	}
	sctx, cancel := finishCtx(ctx)
	serr := c.save(sctx, st, &next)
	cancel()
	if serr != nil {
		c.keepUnsaved(&next)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // verified on the next use
	}
	return c.promote(ctx, st, &next)
}

// promote verifies rec's pending token and stores it as the login's token.
// A verification failure leaves rec (with its new refresh token) stored.
func (c *Client) promote(ctx context.Context, st tokenstore.Store, rec *tokenstore.Record) (*tokenstore.Record, error) {
	vctx, cancel := finishCtx(ctx)
	defer cancel()
	p := rec.Pending
	cl, err := c.accept(vctx, rec, answer{accessToken: p.AccessToken.Reveal(), idToken: p.IDToken.Reveal(),
		received: p.ReceivedAt, expiry: p.Expiry}, "")
	if err != nil {
		return nil, &userError{
			msg:  "clilogin: verify the refreshed token: " + stripPrefixes(err.Error()),
			user: "The refreshed token could not be verified. " + Message(err),
			errs: []error{err},
		}
	}
	if rec.Subject != "" && cl.Subject != "" && cl.Subject != rec.Subject {
		return nil, fmt.Errorf("%w: the refreshed token is for another subject", ErrInvalidToken)
	}
	fresh := *rec
	fresh.Pending = nil
	fresh.AccessToken = p.AccessToken
	fresh.TokenType = p.TokenType
	fresh.Expiry = cl.Expiry
	fresh.IssuedAt = cl.IssuedAt
	if fresh.IssuedAt.IsZero() {
		fresh.IssuedAt = c.now()
	}
	if cl.idToken != "" {
		fresh.IDToken = tokenstore.Secret(cl.idToken)
	}
	if cl.Account != "" {
		fresh.Account = cl.Account
	}
	if cl.Subject != "" {
		fresh.Subject = cl.Subject
	}
	if err := c.save(vctx, st, &fresh); err != nil {
		// This run has a valid token; the store still holds the pending
		// one with the live refresh token, or, if even that could not be
		// saved, only this process knows it.
		c.mu.Lock()
		c.cached = &fresh
		if c.unsaved != nil {
			c.unsaved = &fresh
		}
		c.mu.Unlock()
		if c.cfg.OnRefreshError != nil {
			next := fmt.Sprintf("the refreshed token could not be stored, so the next run may need `%s`", c.loginCommand())
			c.cfg.OnRefreshError(&userError{msg: "clilogin: " + next + ": " + stripPrefixes(err.Error()),
				user: sentence(upperFirst(next)) + " " + Message(err), errs: []error{ErrNotSaved, err}})
		}
	}
	return &fresh, nil
}

// markEnded records that the server refused rec's refresh token: the
// secrets are dropped and the reason kept, so no process sends the token
// again and Status can say what happened.
func (c *Client) markEnded(ctx context.Context, st tokenstore.Store, rec *tokenstore.Record, se *ServerError) error {
	dead := *rec
	dead.AccessToken, dead.RefreshToken, dead.Pending, dead.LostRefreshAt = "", "", nil, time.Time{}
	dead.Ended = &tokenstore.Ended{At: c.now(), Reason: string(endReason(se.Description, !rec.LostRefreshAt.IsZero())), Description: se.Description}
	sctx, cancel := finishCtx(ctx)
	defer cancel()
	if err := c.save(sctx, st, &dead); err != nil {
		c.keepUnsaved(&dead)
	}
	c.setCached(nil)
	return c.endedErr(&dead)
}

// endReason classifies an invalid_grant at refresh from the server's
// description, and whether an earlier refresh's answer was lost.
func endReason(description string, lostRefresh bool) EndReason {
	d := strings.ToLower(description)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(d, w) {
				return true
			}
		}
		return false
	}
	var found []EndReason
	if has("reuse", "already used", "replay", "used twice") {
		found = append(found, EndReused)
	}
	if has("expired", "maximum lifetime", "too old", "lifetime") {
		found = append(found, EndExpired)
	}
	if has("revoked", "logged out", "signed out") {
		found = append(found, EndRevoked)
	}
	switch {
	case len(found) == 1:
		return found[0]
	case lostRefresh:
		return EndReused
	}
	return EndRefused
}

// endedErr is the error for a login the server ended.
func (c *Client) endedErr(rec *tokenstore.Record) error {
	who := rec.Account
	if who == "" {
		who = rec.Subject
	}
	if who != "" {
		who = " of " + who // nothing names the user of an opaque token without OpenID Connect
	}
	why := endedWhy(EndReason(rec.Ended.Reason), rec.Ended.Description)
	return &userError{
		msg:  fmt.Sprintf("clilogin: the login%s at %s ended (%s); run `%s`", who, rec.Issuer, rec.Ended.Reason, c.loginCommand()),
		user: fmt.Sprintf("The login%s at %s has ended: %s Run `%s` to sign in again.", who, rec.Issuer, why, c.loginCommand()),
		errs: []error{ErrLoginEnded, ErrLoginRequired},
	}
}

// endedWhy explains an ended login in a sentence.
func endedWhy(r EndReason, description string) string {
	switch r {
	case EndExpired:
		return "it reached the server's maximum login lifetime."
	case EndRevoked:
		return "the server revoked it."
	case EndReused:
		return "its refresh token was used twice (the answer to an earlier refresh was lost, or the token was copied), so the server ended it."
	}
	if description != "" {
		return "the server refused to refresh it (" + description + ")."
	}
	return "the server refused to refresh it."
}

// Explain says, in a sentence, why the login ended, for status output:
// "the server revoked it."
func (e *LoginEnd) Explain() string { return endedWhy(e.Reason, e.Description) }

// TokenSource returns an oauth2.TokenSource backed by Token(ctx). It is safe
// for concurrent use; every call uses ctx (for the store and a refresh), so
// ctx should live as long as the source is used. Each call returns a new
// *oauth2.Token the caller may keep; it needs no oauth2.ReuseTokenSource
// around it (the Client caches).
func (c *Client) TokenSource(ctx context.Context) oauth2.TokenSource {
	return tokenSource{c: c, ctx: ctx}
}

type tokenSource struct {
	c   *Client
	ctx context.Context
}

func (s tokenSource) Token() (*oauth2.Token, error) { return s.c.Token(s.ctx) }

// HTTPClient returns an *http.Client that sends the bearer token and, on a
// 401, refreshes once and retries idempotent requests (see Transport). Token
// calls use each request's context. Its base transport is the Transport of
// the *http.Client stored in ctx under oauth2.HTTPClient when there is one,
// else http.DefaultTransport; ctx is not otherwise kept.
func (c *Client) HTTPClient(ctx context.Context) *http.Client {
	var base http.RoundTripper
	if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
		base = hc.Transport
	}
	return &http.Client{Transport: c.Transport(base)}
}

// Transport returns an http.RoundTripper that adds "Authorization: Bearer"
// with Token(req.Context()) to each request sent through base (nil means
// http.DefaultTransport). When the server answers 401 Unauthorized, it forces
// one refresh (shared with concurrent callers, like Token's) and, when a new
// token came and the request can be replayed (GET, HEAD, OPTIONS, PUT or
// DELETE, without a body or with GetBody), retries it once. Other requests
// get the 401 response; the next one uses the refreshed token. A Token error
// (ErrLoginRequired, …) is returned as the RoundTrip error.
//
// When an http.Client follows a redirect to another origin (scheme, host or
// port differ from the first request's), the redirected request is sent
// without the token, as net/http does for an Authorization header it copies.
func (c *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, base: base}
}

type transport struct {
	c    *Client
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sameOrigin(firstRequest(req).URL, req.URL) {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	tok, err := t.c.Token(ctx)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	r2 := req.Clone(ctx)
	tok.SetAuthHeader(r2)
	resp, err := t.base.RoundTrip(r2)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.c.envToken() != "" {
		return resp, err
	}
	fresh, err := t.c.token(ctx, tok.AccessToken)
	if err != nil || fresh.AccessToken == tok.AccessToken || !replayable(req) {
		return resp, nil // the caller gets the 401 as it came
	}
	r3 := req.Clone(ctx)
	if req.GetBody != nil {
		if r3.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	fresh.SetAuthHeader(r3)
	return t.base.RoundTrip(r3)
}

// replayable reports whether req is idempotent and its body can be sent again.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// firstRequest follows the chain of redirects that led to req back to the
// request the caller made.
func firstRequest(req *http.Request) *http.Request {
	for req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(hostPort(a), hostPort(b))
}

// hostPort is u's host with its port, the scheme's default when none is given.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}
