package clilogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// DeviceMode says when Login uses the device authorization grant (RFC 8628)
// instead of the browser login.
type DeviceMode int

const (
	// DeviceAuto uses the device flow only where a browser login cannot
	// finish and the server offers it (see Config.Device).
	DeviceAuto DeviceMode = iota
	// DeviceAlways always uses the device flow ("mytool login --device").
	DeviceAlways
	// DeviceNever never uses it.
	DeviceNever
)

// deviceGrantType is the grant_type of device flow token requests.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// ErrDeviceFlow is wrapped, next to the specific cause, by every error of
// a login that used the device flow, so a CLI can phrase its hints for it
// ("run mytool login --device again").
var ErrDeviceFlow = errors.New("clilogin: device login failed")

// ErrDeviceUnsupported means the device flow was asked for but the server's
// metadata has no device_authorization_endpoint.
var ErrDeviceUnsupported = errors.New("clilogin: the server does not offer device login")

// ErrDeviceCodeExpired means the device code expired before the user
// approved it (expired_token, or its expires_in passed).
var ErrDeviceCodeExpired = errors.New("clilogin: the device code expired")

// Bounds of the device flow.
const (
	defaultDeviceInterval = 5 * time.Second // RFC 8628 §3.2
	minDeviceInterval     = time.Second
	maxDeviceInterval     = time.Minute
	slowDownStep          = 5 * time.Second // RFC 8628 §3.5
	maxDeviceField        = 2048            // longest URL or code shown to the user
)

// deviceAuth is the RFC 8628 §3.2 device authorization response, checked.
type deviceAuth struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string // empty when the server sent none
	Expires                 time.Time
	Interval                time.Duration
}

// wantsDevice decides whether Login uses the device flow; see
// Config.Device for the rule.
func (c *Client) wantsDevice(md *metadata) (bool, error) {
	switch c.cfg.Device {
	case DeviceNever:
		return false, nil
	case DeviceAlways:
		if md.DeviceAuthorizationEndpoint == "" {
			return false, &userError{
				msg:  fmt.Sprintf("clilogin: %s has no device_authorization_endpoint in its metadata", md.Issuer),
				user: fmt.Sprintf("The server %s does not offer device login. Run `%s` without --device to sign in through a browser.", md.Issuer, c.loginCommand()),
				errs: []error{ErrDeviceFlow, ErrDeviceUnsupported},
			}
		}
		return true, nil
	}
	if md.DeviceAuthorizationEndpoint == "" || c.cfg.NoBrowser || c.cfg.OpenBrowser != nil || os.Getenv("BROWSER") != "" || !autoHeadless() {
		return false, nil
	}
	return c.cfg.Stdin == nil && !isTerminal(os.Stdin) || inCI(os.Getenv), nil
}

// inCI reports whether $CI says the process runs in continuous integration
// (set by GitHub Actions, GitLab CI, CircleCI, Travis, Buildkite, …).
func inCI(getenv func(string) string) bool {
	v := strings.ToLower(strings.TrimSpace(getenv("CI")))
	return v != "" && v != "0" && v != "false" && v != "no"
}

// deviceLogin runs the device flow: it asks the server for a device code,
// shows the verification URI and the user code, polls the token endpoint
// until the user approved or denied it elsewhere, and stores the login
// exactly as the browser login does (completeLogin). Every error wraps
// ErrDeviceFlow.
func (c *Client) deviceLogin(ctx context.Context, st tokenstore.Store, md *metadata) (*Session, error) {
	sess, err := c.devicePoll(ctx, st, md)
	if err != nil && !errors.Is(err, ErrDeviceFlow) {
		err = &userError{msg: err.Error(), user: Message(err), errs: []error{ErrDeviceFlow, err}}
	}
	return sess, err
}

func (c *Client) devicePoll(ctx context.Context, st tokenstore.Store, md *metadata) (*Session, error) {
	da, err := c.deviceAuthorize(ctx, md)
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.deviceCtxErr(ctx, err)
		}
		return nil, &userError{
			msg:  "clilogin: start the device login: " + stripPrefixes(err.Error()),
			user: "The device login could not be started. " + Message(err),
			errs: []error{ErrDeviceFlow, err},
		}
	}
	scr := newScreen(c.out, animates(c.cfg.Terminal, c.out), c.now)
	defer scr.close()
	scr.printf("To sign in to %s, open this URL on any device (a phone, another computer):\n\n    %s\n\nand enter the code:\n\n    %s\n\n",
		c.cfg.AppName, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		scr.printf("Or open this URL, which fills in the code for you:\n\n    %s\n\n", da.VerificationURIComplete)
	}
	if !da.Expires.IsZero() {
		scr.printf("The code expires in %s.\n", aboutDuration(da.Expires.Sub(c.now())))
	}
	const waiting = "Waiting for you to approve on the other device…"
	scr.spin(waiting)

	form := url.Values{"grant_type": {deviceGrantType}, "device_code": {da.DeviceCode}}
	interval := da.Interval // raised by slow_down, for good (RFC 8628 §3.5)
	wait := interval        // longer while the server does not answer
	troubled := false       // a transient failure was reported
	for {
		if err := c.deviceWait(ctx, wait); err != nil {
			return nil, c.deviceCtxErr(ctx, nil)
		}
		if !da.Expires.IsZero() && !c.now().Before(da.Expires) {
			return nil, c.deviceExpired(da)
		}
		tok, err := c.postToken(ctx, md.TokenEndpoint, form, c.authMethod(md))
		if ctx.Err() != nil {
			// Canceled or timed out meanwhile: nothing is stored, even if
			// the answer carried tokens; those are revoked, so no grant
			// the user never got stays alive at the server.
			if err == nil {
				c.discard(ctx, md, tok)
			}
			return nil, c.deviceCtxErr(ctx, nil)
		}
		if err == nil {
			scr.close()
			return c.completeLogin(ctx, st, md, tok, "")
		}
		var se *ServerError
		if !errors.As(err, &se) {
			se = &ServerError{}
		}
		switch {
		case se.Code == "authorization_pending":
			wait, troubled = interval, false
		case se.Code == "slow_down":
			interval = min(interval+slowDownStep, maxDeviceInterval)
			wait, troubled = interval, false
		case se.Code == "access_denied":
			return nil, &userError{
				msg:  "clilogin: the device login was denied",
				user: fmt.Sprintf("The sign-in was denied on the other device, so nothing was stored. Run `%s` to try again.", c.deviceCommand()),
				errs: []error{ErrDeviceFlow, ErrAccessDenied, err},
			}
		case se.Code == "expired_token":
			return nil, c.deviceExpired(da)
		case transientPollError(err):
			// The code may still be approved: keep polling, slower, and
			// say once that the server is not answering.
			if !troubled {
				scr.printf("%s Still trying until the code expires.\n", Message(err))
				scr.spin(waiting)
			}
			wait, troubled = min(2*wait, maxDeviceInterval), true
		default:
			return nil, &userError{
				msg:  "clilogin: device login: " + stripPrefixes(err.Error()),
				user: "The device login could not be completed. " + Message(err) + fmt.Sprintf(" Run `%s` to try again.", c.deviceCommand()),
				errs: []error{ErrDeviceFlow, err},
			}
		}
	}
}

// discard revokes the tokens of a token response the login does not keep
// (it was canceled, the tokens failed verification, the store refused
// them), best effort, within the revocation bound of Logout.
func (c *Client) discard(ctx context.Context, md *metadata, tok *tokenResponse) {
	rec := &tokenstore.Record{
		AccessToken: tokenstore.Secret(tok.AccessToken), RefreshToken: tokenstore.Secret(tok.RefreshToken),
		RevocationEndpoint: md.RevocationEndpoint, ClientID: c.cfg.ClientID, TokenAuth: c.authMethod(md),
	}
	_ = c.revoke(context.WithoutCancel(ctx), rec)
}

// aboutDuration says d the way people do: "10 minutes", "45 seconds".
func aboutDuration(d time.Duration) string {
	switch {
	case d >= 90*time.Second:
		return fmt.Sprintf("%d minutes", int(d.Round(time.Minute)/time.Minute))
	case d >= time.Minute:
		return "1 minute"
	}
	return plural(max(int(d.Round(time.Second)/time.Second), 1), "second", "seconds")
}

// transientPollError reports whether a failed poll may succeed later: no
// answer, a 5xx, or temporarily_unavailable.
func transientPollError(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return se.Status >= 500 || se.Code == "temporarily_unavailable"
	}
	return errors.Is(err, ErrServerUnreachable)
}

// deviceWait waits d, or until ctx ends.
func (c *Client) deviceWait(ctx context.Context, d time.Duration) error {
	if c.wait != nil {
		return c.wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) deviceCommand() string {
	return c.loginCommand() + " --device"
}

func (c *Client) deviceExpired(da *deviceAuth) error {
	return &userError{
		msg:  "clilogin: the device code expired before it was approved",
		user: fmt.Sprintf("The code %s expired before it was approved, so nothing was stored. Run `%s` again and approve within the time shown.", da.UserCode, c.deviceCommand()),
		errs: []error{ErrDeviceFlow, ErrDeviceCodeExpired},
	}
}

// deviceCtxErr is ctxErr for the device flow.
func (c *Client) deviceCtxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrServerUnreachable):
		return err
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &userError{
			msg:  fmt.Sprintf("clilogin: timed out waiting for the device login to be approved: %v", ctx.Err()),
			user: fmt.Sprintf("Timed out waiting for the sign-in to be approved on the other device. Run `%s` again and approve it in time.", c.deviceCommand()),
			errs: []error{ErrDeviceFlow, ctx.Err()},
		}
	case ctx.Err() != nil:
		return &userError{msg: "clilogin: login canceled", user: "The login was canceled; nothing was stored.", errs: []error{ErrDeviceFlow, ctx.Err()}}
	}
	return err
}

// deviceAuthorize sends the RFC 8628 §3.1 device authorization request.
func (c *Client) deviceAuthorize(ctx context.Context, md *metadata) (*deviceAuth, error) {
	endpoint := md.DeviceAuthorizationEndpoint
	// Config.AuthParams go along ("audience" for Auth0's API): RFC 8628
	// §3.1 allows extra parameters, and New keeps them off the ones set
	// here.
	form := url.Values{}
	for k, vs := range c.cfg.AuthParams {
		form[k] = slices.Clone(vs)
	}
	if s := c.scopes(md); len(s) > 0 {
		form.Set("scope", strings.Join(s, " "))
	}
	// The client authenticates as at the token endpoint (RFC 8628 §3.1).
	resp, body, err := c.postForm(ctx, ctx, "device authorization endpoint", endpoint, form, c.authMethod(md))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, serverError("device authorization endpoint", endpoint, resp, body)
	}
	da, err := parseDeviceAuth(body, c.now())
	if err != nil {
		return nil, invalidResponse("device authorization endpoint", endpoint, "a device authorization response", err)
	}
	return da, nil
}

// parseDeviceAuth reads a device authorization response leniently where
// servers differ (verification_url for verification_uri, numbers as
// strings) and strictly where the user sees it: the code and the URLs must
// be printable ASCII, and the URLs absolute http(s).
func parseDeviceAuth(body []byte, now time.Time) (*deviceAuth, error) {
	var raw struct {
		DeviceCode              string          `json:"device_code"`
		UserCode                string          `json:"user_code"`
		VerificationURI         string          `json:"verification_uri"`
		VerificationURL         string          `json:"verification_url"`
		VerificationURIComplete string          `json:"verification_uri_complete"`
		ExpiresIn               json.RawMessage `json:"expires_in"`
		Interval                json.RawMessage `json:"interval"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("the body is not JSON (%d bytes)", len(body))
	}
	if raw.VerificationURI == "" {
		raw.VerificationURI = raw.VerificationURL
	}
	switch {
	case raw.DeviceCode == "":
		return nil, errors.New("it has no device_code")
	case raw.UserCode == "" || !shownSafely(raw.UserCode):
		return nil, errors.New("its user_code is missing or not printable")
	case !showableURL(raw.VerificationURI):
		return nil, errors.New("its verification_uri is missing or not an http(s) URL")
	}
	da := &deviceAuth{DeviceCode: raw.DeviceCode, UserCode: raw.UserCode, VerificationURI: raw.VerificationURI, Interval: defaultDeviceInterval}
	if showableURL(raw.VerificationURIComplete) {
		da.VerificationURIComplete = raw.VerificationURIComplete
	}
	if d := parseExpiresIn(raw.ExpiresIn); d > 0 {
		da.Expires = now.Add(d)
	}
	if d := parseExpiresIn(raw.Interval); d > 0 {
		da.Interval = min(max(d.Round(time.Second), minDeviceInterval), maxDeviceInterval)
	}
	return da, nil
}

// shownSafely reports whether s can go to a terminal as is: printable
// ASCII, bounded (no escape sequences from the server).
func shownSafely(s string) bool {
	if len(s) > maxDeviceField {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func showableURL(s string) bool {
	if s == "" || !shownSafely(s) || strings.ContainsAny(s, " ") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}
