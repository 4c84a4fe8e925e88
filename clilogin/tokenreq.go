package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tokenResponse is a successful RFC 6749 §5.1 access token response, read
// leniently: servers in the field send expires_in as a float, a string or
// garbage, and none of that may cost a login.
type tokenResponse struct {
	AccessToken  string
	TokenType    string // "Bearer" when the server sent none
	RefreshToken string // empty when the server issued none (then the old one stays valid)
	// ExpiresIn is the lifetime the server announced; zero when it sent
	// none or one that cannot be read. A JWT access token's verified "exp"
	// is authoritative over it.
	ExpiresIn time.Duration
	Scope     string
	// IDToken is the OpenID Connect ID token, when the server sent one. It
	// is not verified here.
	IDToken string
}

// tokenFinishGrace is how long a token request goes on after the caller's
// ctx ended: the server may already have rotated the refresh token or
// spent the code, and its answer is the only copy of the new one.
const tokenFinishGrace = 10 * time.Second

// detach returns a context that carries ctx's values but is not canceled
// with it: it ends grace after ctx ends, or when cancel is called.
func detach(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return dctx, func() { stop(); cancel() }
}

// postToken sends an RFC 6749 token request (form, plus the client's
// credentials as auth says: see authenticate) to endpoint and reads the
// answer. The request
// finishes even when ctx ends, within tokenFinishGrace after that and the
// HTTP client's timeout, so an answer the server committed to is not lost
// to a Ctrl+C.
//
// Errors: *ServerError for an RFC 6749 §5.2 error answer (or any non-200);
// *UnreachableError when no answer came; an error wrapping ErrInvalidResponse
// when the answer is not a token response. None quotes the form or the
// body.
func (c *Client) postToken(ctx context.Context, endpoint string, form url.Values, auth string) (*tokenResponse, error) {
	dctx, cancel := detach(ctx, tokenFinishGrace)
	defer cancel()
	resp, body, err := c.postForm(ctx, dctx, "token endpoint", endpoint, form, auth)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, serverError("token endpoint", endpoint, resp, body)
	}
	tr, err := parseTokenResponse(resp.Header.Get("Content-Type"), body)
	if err != nil {
		// GitHub answers errors (bad_verification_code, the device flow's
		// authorization_pending and slow_down) with 200 instead of RFC
		// 6749 §5.2's 400: an answer with an error code and no access
		// token is that error.
		if se := serverError("token endpoint", endpoint, resp, body); se.Code != "" {
			return nil, se
		}
		return nil, invalidResponse("token endpoint", endpoint, "a token response", err)
	}
	return tr, nil
}

// postForm POSTs form, with the client's credentials as auth says (see
// authenticate), to endpoint ("what" names it in errors: "token endpoint")
// on reqCtx, and returns the answer with its body (at most maxResponse
// bytes; resp.Body is closed). ctx is the caller's: whether it ended decides
// how an unanswered request is reported (*UnreachableError otherwise). The
// errors quote neither the form nor the body.
func (c *Client) postForm(ctx, reqCtx context.Context, what, endpoint string, form url.Values, auth string) (*http.Response, []byte, error) {
	authz := c.authenticate(form, auth)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, fmt.Errorf("clilogin: %s %q: %v", what, endpoint, sanitize(err.Error(), 200))
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, c.unreachable(ctx, what, endpoint, start, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, nil, c.unreachable(ctx, what, endpoint, start, err)
	}
	return resp, body, nil
}

// invalidResponse is the error for an answer from endpoint (what it is:
// "token endpoint") that is not the kind expected (want: "a token
// response"), for the reason cause gives. It wraps ErrInvalidResponse, and
// its sentence names the endpoint once.
func invalidResponse(what, endpoint, want string, cause error) error {
	return &userError{
		msg:  fmt.Sprintf("clilogin: invalid response from the %s %s: %v", what, endpoint, cause),
		user: sentence(fmt.Sprintf("The %s %s sent an answer that is not %s: %v", what, endpoint, want, cause)),
		errs: []error{ErrInvalidResponse},
	}
}

// ErrInvalidResponse means a server's answer could not be used: a token
// response without an access token, or one that is not JSON.
var ErrInvalidResponse = errors.New("clilogin: invalid response")

// parseTokenResponse reads a 200 answer: JSON (RFC 6749 §5.1), whatever
// Content-Type labels it (servers in the field send JSON as text/plain or
// text/html), or the form encoding some servers still send as text/plain
// or application/x-www-form-urlencoded.
func parseTokenResponse(contentType string, body []byte) (*tokenResponse, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	isJSON := strings.HasPrefix(strings.TrimSpace(string(body)), "{")
	tr := &tokenResponse{}
	switch {
	case !isJSON && (mt == "application/x-www-form-urlencoded" || mt == "text/plain"):
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errors.New("the form-encoded body is malformed")
		}
		tr.AccessToken, tr.TokenType, tr.RefreshToken = vals.Get("access_token"), vals.Get("token_type"), vals.Get("refresh_token")
		tr.Scope, tr.IDToken = vals.Get("scope"), vals.Get("id_token")
		tr.ExpiresIn = parseExpiresIn(json.RawMessage(strconv.Quote(vals.Get("expires_in"))))
	default:
		var raw struct {
			AccessToken  string          `json:"access_token"`
			TokenType    string          `json:"token_type"`
			RefreshToken string          `json:"refresh_token"`
			ExpiresIn    json.RawMessage `json:"expires_in"`
			Scope        string          `json:"scope"`
			IDToken      string          `json:"id_token"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, fmt.Errorf("the body is not JSON (%d bytes, %s)", len(body), sanitize(mt, 64))
		}
		tr.AccessToken, tr.TokenType, tr.RefreshToken = raw.AccessToken, raw.TokenType, raw.RefreshToken
		tr.Scope, tr.IDToken = raw.Scope, raw.IDToken
		tr.ExpiresIn = parseExpiresIn(raw.ExpiresIn)
	}
	if tr.AccessToken == "" {
		return nil, errors.New("it has no access_token")
	}
	if tr.TokenType == "" {
		tr.TokenType = "Bearer"
	}
	return tr, nil
}

// maxExpiresIn bounds an announced lifetime (ten years): anything longer is
// treated as unknown rather than overflowing time.Duration.
const maxExpiresIn = 10 * 365 * 24 * time.Hour

// parseExpiresIn reads RFC 6749's expires_in in whatever form servers send
// it: a JSON integer or float (3600, 3600.5, 1e3), or a string holding one,
// with surrounding spaces ("3600 "). Anything else (missing, null, "abc",
// negative, NaN, absurdly large) is zero: unknown.
func parseExpiresIn(raw json.RawMessage) time.Duration {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0
	}
	if unq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(unq)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > maxExpiresIn.Seconds() {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// serverError reads an RFC 6749 §5.2 error answer (or any non-200 one) into
// a *ServerError. The body is JSON, or form-encoded as some servers send it
// (GitHub, without Accept: application/json).
func serverError(what, endpoint string, resp *http.Response, body []byte) *ServerError {
	se := &ServerError{Endpoint: strings.TrimSuffix(what, " endpoint"), URL: endpoint, Status: resp.StatusCode}
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
			if vals, err := url.ParseQuery(string(body)); err == nil {
				e.Error, e.ErrorDescription = vals.Get("error"), vals.Get("error_description")
			}
		}
	}
	if e.Error != "" {
		se.Code, se.Description = sanitizeCode(e.Error), sanitize(e.ErrorDescription, 200)
	}
	return se
}

// ErrServerUnreachable means a server endpoint gave no answer: the
// connection failed, or nothing came back in time. It is wrapped by
// *UnreachableError.
var ErrServerUnreachable = errors.New("clilogin: server unreachable")

// errNoAnswer stands for the HTTP client's own timeout in an
// *UnreachableError, so that it is not mistaken for the caller's deadline
// (context.DeadlineExceeded).
var errNoAnswer = errors.New("no answer within the HTTP client's timeout")

// UnreachableError means an endpoint of the server gave no answer. It names
// the endpoint and how long the request waited, so a server that does not
// answer is never reported as something else (a login timeout, "not logged
// in"). It wraps ErrServerUnreachable and Err.
type UnreachableError struct {
	Endpoint string        // what it is: "metadata", "token endpoint", "JWKS", "revocation endpoint"
	URL      string        // the endpoint's URL (it carries no secret)
	Waited   time.Duration // how long the request waited before it failed
	// Timeout is true when the server accepted the connection (or did not
	// refuse it) and gave no answer in time.
	Timeout bool
	// Err is the cause: the transport error, errNoAnswer for the HTTP
	// client's timeout, or the caller's ctx.Err() when its deadline ended
	// the wait.
	Err error
	// mayHaveArrived is true when the request may have reached the server
	// (it was not refused at connect): the server may have acted on it.
	mayHaveArrived bool
}

func (e *UnreachableError) Error() string {
	return "clilogin: " + e.describe()
}

func (e *UnreachableError) describe() string {
	if e.Timeout {
		return fmt.Sprintf("the %s %s did not answer within %s", e.Endpoint, e.URL, roundWait(e.Waited))
	}
	return fmt.Sprintf("cannot reach the %s %s: %s", e.Endpoint, e.URL, transportCause(e.Err))
}

// UserMessage implements the sentence Message shows.
func (e *UnreachableError) UserMessage() string {
	if e.Timeout {
		return sentence(fmt.Sprintf("The %s %s did not answer within %s", e.Endpoint, e.URL, roundWait(e.Waited))) +
			" Check that the server is up and reachable, then try again."
	}
	return sentence(fmt.Sprintf("Cannot reach the %s %s: %s", e.Endpoint, e.URL, transportCause(e.Err))) +
		" Check that the server is running and the address is right."
}

// Unwrap returns ErrServerUnreachable and Err.
func (e *UnreachableError) Unwrap() []error { return []error{ErrServerUnreachable, e.Err} }

func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// unreachable turns the failure of a request started at start into an
// *UnreachableError, or into ctx's error when the caller canceled. Waited
// is the limit that ended the wait when one did (the HTTP client's
// timeout, or what was left of ctx's deadline at start), else the time
// spent.
func (c *Client) unreachable(ctx context.Context, what, endpoint string, start time.Time, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("clilogin: request to the %s canceled: %w", what, ctx.Err())
	}
	ue := &UnreachableError{Endpoint: what, URL: endpoint, Waited: time.Since(start), Err: err, mayHaveArrived: true}
	var ne net.Error
	switch {
	case ctx.Err() != nil: // the caller's deadline
		ue.Timeout, ue.Err = true, ctx.Err()
		if dl, ok := ctx.Deadline(); ok {
			ue.Waited = dl.Sub(start)
		}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		ue.Timeout, ue.Err = true, errNoAnswer
		if c.hc.Timeout > 0 && ue.Waited >= c.hc.Timeout {
			ue.Waited = c.hc.Timeout
		}
	case errors.Is(err, syscall.ECONNREFUSED), isDNSError(err):
		ue.mayHaveArrived = false
	}
	return ue
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

// transportCause says in a few words why a request got no answer.
func transportCause(err error) string {
	var de *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &de):
		return "no such host " + sanitize(de.Name, 100)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the connection was closed before an answer came"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return sanitize(err.Error(), 200)
}
