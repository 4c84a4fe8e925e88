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

// envToken returns the TokenEnv override, or "".
func (c *Client) envToken() string {
	if c.cfg.TokenEnv == "" {
		return ""
	}
	return os.Getenv(c.cfg.TokenEnv)
}

// Status reports the stored login without refreshing it and without network
// I/O; ErrNotLoggedIn when there is none.
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
// process or in others sharing the store, make one refresh between them. The
// new token is verified like at login and saved before Token returns.
//
// When the refresh fails and the old token is still valid, Token returns the
// old token and reports the failure to Config.OnRefreshError. When the token
// expired and cannot be refreshed, or no login is stored, the error wraps
// ErrLoginRequired (and ErrNotLoggedIn when none is stored) and names the
// command to run. With the TokenEnv override set, Token returns that token
// as is.
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
	if rec := c.getCached(); rec != nil {
		now := c.now()
		if !c.inWindow(rec, now) || (c.inBackoff(now) && now.Before(rec.Expiry)) {
			return oauthToken(rec), nil
		}
	}
	return c.token(ctx, "")
}

// inWindow reports whether rec is due for a refresh at now.
func (c *Client) inWindow(rec *tokenstore.Record, now time.Time) bool {
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

func oauthToken(rec *tokenstore.Record) *oauth2.Token {
	typ := rec.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return &oauth2.Token{AccessToken: rec.AccessToken.Reveal(), TokenType: typ, Expiry: rec.Expiry}
}

// token loads the stored login and refreshes it when it is in its refresh
// window, or, when stale is not empty, when its access token is still stale
// (the API refused it).
func (c *Client) token(ctx context.Context, stale string) (*oauth2.Token, error) {
	st, err := c.storeFor()
	if err != nil {
		return nil, err
	}
	due := func(rec *tokenstore.Record, now time.Time) bool {
		if stale != "" {
			return rec.AccessToken.Reveal() == stale
		}
		return c.inWindow(rec, now)
	}
	rec, err := c.load(ctx, st)
	if err != nil {
		return nil, c.loadErr(err)
	}
	now := c.now()
	if !due(rec, now) || !canRefresh(rec) || (c.inBackoff(now) && now.Before(rec.Expiry)) {
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
		return nil, err
	}
	defer unlock()
	// Another goroutine or process may have refreshed while we waited.
	if rec, err = c.load(ctx, st); err != nil {
		return nil, c.loadErr(err)
	}
	now = c.now()
	if !due(rec, now) || !canRefresh(rec) {
		return c.serve(rec, now)
	}
	fresh, err := c.refresh(ctx, rec)
	if err == nil {
		c.mu.Lock()
		c.retryRefresh = time.Time{}
		c.mu.Unlock()
		// The server has rotated the refresh token: the stored one is now
		// spent. Save the new one even if ctx ends now (Ctrl+C), or the
		// login is lost.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishRefreshTimeout)
		serr := c.save(sctx, st, fresh)
		cancel()
		if serr != nil {
			// This run still has a valid token; only the next one may need
			// a new login.
			c.setCached(fresh)
			if c.cfg.OnRefreshError != nil {
				c.cfg.OnRefreshError(fmt.Errorf("%w, so the next run may need `%s`: %w", ErrNotSaved, c.loginCommand(), serr))
			}
		}
		return oauthToken(fresh), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("clilogin: refresh the token: %w", ctx.Err())
	}
	err = fmt.Errorf("%w: %w", ErrRefreshFailed, err)
	c.mu.Lock()
	c.retryRefresh = now.Add(refreshRetryDelay)
	c.mu.Unlock()
	if now.Before(rec.Expiry) {
		c.setCached(rec)
		if c.cfg.OnRefreshError != nil {
			c.cfg.OnRefreshError(err)
		}
		return oauthToken(rec), nil
	}
	return nil, c.loginRequired("the stored token expired and could not be refreshed", err)
}

// serve returns rec's token when it is still valid, else ErrLoginRequired.
func (c *Client) serve(rec *tokenstore.Record, now time.Time) (*oauth2.Token, error) {
	if !now.Before(rec.Expiry) {
		why := "the stored token expired and cannot be refreshed"
		if canRefresh(rec) {
			why = "the stored token expired and could not be refreshed"
		}
		return nil, c.loginRequired(why, nil)
	}
	c.setCached(rec)
	return oauthToken(rec), nil
}

func (c *Client) loadErr(err error) error {
	if errors.Is(err, tokenstore.ErrCorrupt) {
		return c.loginRequired("the stored login cannot be read", err)
	}
	if errors.Is(err, ErrNotLoggedIn) {
		return &loginRequiredError{
			msg:  fmt.Sprintf("clilogin: not logged in; run `%s`", c.loginCommand()),
			errs: []error{ErrNotLoggedIn, ErrLoginRequired},
		}
	}
	return err
}

func canRefresh(rec *tokenstore.Record) bool {
	return rec.RefreshToken != "" && rec.TokenEndpoint != ""
}

// refresh runs the refresh_token grant through x/oauth2 and verifies the new
// access token like at login.
func (c *Client) refresh(ctx context.Context, rec *tokenstore.Record) (*tokenstore.Record, error) {
	conf := &oauth2.Config{
		ClientID: rec.ClientID,
		Endpoint: oauth2.Endpoint{TokenURL: rec.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}
	tok, err := conf.TokenSource(c.oauthCtx(ctx), &oauth2.Token{RefreshToken: rec.RefreshToken.Reveal()}).Token()
	if err != nil {
		return nil, oauthError("token", err)
	}
	iss := rec.TokenIssuer
	if iss == "" {
		iss = rec.Issuer
	}
	// The server has rotated the refresh token: from here on, finish even
	// if ctx ends (Ctrl+C), or the login is lost.
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishRefreshTimeout)
	defer cancel()
	cl, err := c.verify(vctx, tok.AccessToken, expect{jwksURI: rec.JWKSURI, issuer: iss, audience: rec.Audience})
	if err != nil {
		return nil, err
	}
	if rec.Subject != "" && cl.Subject != rec.Subject {
		return nil, fmt.Errorf("%w: the refreshed token is for another subject", ErrInvalidToken)
	}
	fresh := *rec
	fresh.AccessToken = tokenstore.Secret(tok.AccessToken)
	if tok.RefreshToken != "" {
		fresh.RefreshToken = tokenstore.Secret(tok.RefreshToken)
	}
	fresh.TokenType = tok.Type()
	fresh.Expiry = cl.Expiry
	fresh.IssuedAt = cl.IssuedAt
	if fresh.IssuedAt.IsZero() {
		fresh.IssuedAt = c.now()
	}
	if cl.Account != "" {
		fresh.Account = cl.Account
	}
	fresh.Subject = cl.Subject
	return &fresh, nil
}

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
