package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The device authorization grant (RFC 8628): a CLI on a machine without a
// usable browser asks DeviceAuthorizationPath for a device code and a short
// user code, shows the user the code and the verification URI, and polls
// TokenPath with DeviceCodeGrantType while the user types the code at
// DevicePath on any device, signs in through the Authenticator and approves
// on the consent page.

// Paths and names of the device authorization grant.
const (
	// DeviceAuthorizationPath is the device authorization endpoint (RFC 8628
	// §3.1), advertised as device_authorization_endpoint.
	DeviceAuthorizationPath = "/oauth/device_authorization"
	// DevicePath is the verification page (verification_uri unless
	// DeviceFlowConfig.VerificationURI says otherwise): GET shows a form for
	// the user code, GET with ?user_code= (verification_uri_complete) and
	// POST of the form look the code up and continue to sign-in and consent.
	DevicePath = "/oauth/device"
	// DeviceCodeGrantType is the grant_type of the token request (RFC 8628
	// §3.4).
	DeviceCodeGrantType = "urn:ietf:params:oauth:grant-type:device_code"
)

// Defaults and limits of DeviceFlowConfig.
const (
	// DefaultDeviceCodeTTL and MaxDeviceCodeTTL bound expires_in.
	DefaultDeviceCodeTTL = 10 * time.Minute
	MaxDeviceCodeTTL     = time.Hour
	// DefaultDevicePollInterval is the interval the device authorization
	// response asks clients to wait between polls (RFC 8628's default).
	DefaultDevicePollInterval = 5 * time.Second
	// DefaultUserCodeAttempts is how many wrong user codes one source may
	// enter per DefaultUserCodeAttemptWindow.
	DefaultUserCodeAttempts = 20
	// DefaultUserCodeAttemptsTotal is how many wrong user codes all sources
	// together may enter per window.
	DefaultUserCodeAttemptsTotal = 1000
	// DefaultUserCodeAttemptWindow is the window both limits count in.
	DefaultUserCodeAttemptWindow = 10 * time.Minute
	// slowDownStep is what slow_down adds to the interval (RFC 8628 §3.5).
	slowDownStep = 5 * time.Second
)

// DeviceFlowConfig configures the device authorization grant, offered to
// the clients whose Client.DeviceFlow is set. Its zero value is a sound
// configuration.
//
// User codes are 8 letters from BCDFGHJKLMNPQRSTVWXZ (no vowels, so no
// words; no digits, so no 0/O or 1/I), shown as XXXX-XXXX; case, dashes,
// spaces and other punctuation are ignored when the user types one. That is
// 20^8 ≈ 2.6·10^10 codes (RFC 8628 §6.1): with N codes live at once, one
// guess hits with probability N/2.6·10^10, and the attempt limits below
// bound the guesses. Wrong codes are counted in the StateStore, so the
// limits hold across instances.
type DeviceFlowConfig struct {
	// CodeTTL is how long a device code and its user code are valid
	// (expires_in). Zero means DefaultDeviceCodeTTL (10 min); more than
	// MaxDeviceCodeTTL (1 h) is an error.
	CodeTTL time.Duration
	// Interval is the time clients must wait between polls of the token
	// endpoint (interval), in whole seconds. A poll that comes sooner gets
	// slow_down, and that device code's interval grows by 5 s. Zero means
	// DefaultDevicePollInterval (5 s).
	Interval time.Duration
	// VerificationURI is the verification_uri shown to users, for a shorter
	// address than Issuer + DevicePath. The application must route it to
	// the handler's DevicePath or redirect there, keeping the query. Empty
	// means Issuer + DevicePath.
	VerificationURI string
	// MaxAttempts is how many wrong user codes one source (see ClientIP) may
	// enter per AttemptWindow; further entries from it are refused until the
	// window ends. Zero means DefaultUserCodeAttempts (20); negative means
	// no per-source limit.
	MaxAttempts int
	// MaxAttemptsTotal is how many wrong user codes all sources together may
	// enter per AttemptWindow: it bounds a guesser spread over many
	// addresses, at the price of refusing every entry for the rest of the
	// window once reached. Zero means DefaultUserCodeAttemptsTotal (1000);
	// negative means no global limit.
	MaxAttemptsTotal int
	// AttemptWindow is the fixed window the attempt limits count in. Zero
	// means DefaultUserCodeAttemptWindow (10 min).
	AttemptWindow time.Duration
	// ClientIP returns the source address MaxAttempts counts per. Nil means
	// the host of r.RemoteAddr; behind a reverse proxy, return the client
	// address the proxy reports (and that a client cannot forge).
	ClientIP func(r *http.Request) string
}

func (d DeviceFlowConfig) withDefaults(issuer string) (DeviceFlowConfig, error) {
	bad := func(format string, a ...any) (DeviceFlowConfig, error) {
		return d, fmt.Errorf("%w: DeviceFlow."+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case d.CodeTTL == 0:
		d.CodeTTL = DefaultDeviceCodeTTL
	case d.CodeTTL < time.Second || d.CodeTTL > MaxDeviceCodeTTL:
		return bad("CodeTTL must be between 1s and %v", MaxDeviceCodeTTL)
	}
	switch {
	case d.Interval == 0:
		d.Interval = DefaultDevicePollInterval
	case d.Interval < time.Second || d.Interval%time.Second != 0:
		return bad("Interval must be a whole number of seconds, at least 1s")
	}
	if d.VerificationURI == "" {
		d.VerificationURI = issuer + DevicePath
	} else if u, err := url.Parse(d.VerificationURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") ||
		u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		return bad("VerificationURI must be an http(s) URL with a host and no query or fragment")
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = DefaultUserCodeAttempts
	}
	if d.MaxAttemptsTotal == 0 {
		d.MaxAttemptsTotal = DefaultUserCodeAttemptsTotal
	}
	switch {
	case d.AttemptWindow == 0:
		d.AttemptWindow = DefaultUserCodeAttemptWindow
	case d.AttemptWindow < 0:
		return bad("AttemptWindow is negative")
	}
	if d.ClientIP == nil {
		d.ClientIP = remoteHost
	}
	return d, nil
}

func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// Keys of the device flow in the StateStore.
const (
	keyDevice      = "keyloop:device:"       // + hashSecret(device_code) → deviceRecord
	keyDeviceUser  = "keyloop:device-user:"  // + hashSecret(user code) → the device record's key part
	keyDeviceTries = "keyloop:device-tries:" // + scope ":" window → wrong user codes counted
)

// Device record statuses.
const (
	devicePending  = "pending"
	deviceApproved = "approved"
	deviceDenied   = "denied"
	deviceIssued   = "issued"
)

// deviceRecord is what a device code stands for. It lives for twice the
// code's lifetime so a late poll learns expired_token (not invalid_grant),
// and an issued code stays known to detect its reuse.
type deviceRecord struct {
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope,omitempty"`
	UserKey  string    `json:"user_key"` // hashSecret of the normalized user code
	Expires  time.Time `json:"expires"`
	// Interval is the current polling interval in seconds; NextPoll the
	// earliest time the next poll is on time; Spare whether one early poll
	// may still come before it.
	Interval  int64     `json:"interval"`
	NextPoll  time.Time `json:"next_poll,omitzero"`
	Spare     bool      `json:"spare,omitempty"`
	Status    string    `json:"status"`
	Identity  *Identity `json:"identity,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	SessionID string    `json:"sid,omitempty"`
}

// deviceAuthResponse is the RFC 8628 §3.2 success body.
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// deviceFlowEnabled reports whether any client may use the device grant.
func (h *Handler) deviceFlowEnabled() bool {
	for _, c := range h.clients {
		if c.DeviceFlow {
			return true
		}
	}
	return false
}

// deviceAuthorization serves DeviceAuthorizationPath (RFC 8628 §3.1–3.2):
// a form POST with client_id (or HTTP Basic with an empty secret) and an
// optional scope.
func (h *Handler) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, e := readForm(w, r)
	var client *Client
	if e == nil {
		client, e = h.clientFor(w, r, form, true)
	}
	switch {
	case e != nil:
	case !client.DeviceFlow:
		e = oerr(http.StatusBadRequest, "unauthorized_client", "this client may not use the device authorization grant")
	case len(form.Get("scope")) > maxScopeLen:
		e = oerr(http.StatusBadRequest, "invalid_scope", "scope too long")
	default:
		if _, ok := parseScope(form.Get("scope")); !ok {
			e = oerr(http.StatusBadRequest, "invalid_scope", "scope must be space-separated scope tokens (RFC 6749 section 3.3)")
		}
	}
	if e != nil {
		writeOAuthError(w, e)
		return
	}
	d := h.cfg.DeviceFlow
	deviceCode := randomID()
	dk := hashSecret(deviceCode)
	// The user code is claimed with put-if-absent: two live device codes
	// never share one. A collision is rare (N/2.6·10^10), several in a row
	// mean the store is broken.
	var userCode string
	for i := 0; ; i++ {
		userCode = newUserCode()
		ok, err := h.cfg.State.CompareAndSwap(ctx, keyDeviceUser+hashSecret(userCode), nil, []byte(dk), d.CodeTTL)
		if err != nil {
			h.log.ErrorContext(ctx, "server: device authorization: storing user code", "err", err)
			writeOAuthError(w, errDeviceStateDown)
			return
		}
		if ok {
			break
		}
		if i == 4 {
			h.log.ErrorContext(ctx, "server: device authorization: no free user code after 5 tries")
			writeOAuthError(w, oerr(http.StatusInternalServerError, "server_error", "the server could not store the request"))
			return
		}
	}
	now := h.cfg.Now()
	rec := deviceRecord{
		ClientID: client.ID, Scope: form.Get("scope"), UserKey: hashSecret(userCode),
		Expires: now.Add(d.CodeTTL), Interval: int64(d.Interval / time.Second), Status: devicePending,
	}
	if err := h.putJSON(ctx, keyDevice+dk, rec, 2*d.CodeTTL); err != nil {
		h.log.ErrorContext(ctx, "server: device authorization: storing device code", "err", err)
		h.cfg.State.Delete(context.WithoutCancel(ctx), keyDeviceUser+rec.UserKey)
		writeOAuthError(w, errDeviceStateDown)
		return
	}
	shown := formatUserCode(userCode)
	h.log.InfoContext(ctx, "server: device authorization started", "client_id", client.ID)
	writeJSON(w, http.StatusOK, deviceAuthResponse{
		DeviceCode:              deviceCode,
		UserCode:                shown,
		VerificationURI:         d.VerificationURI,
		VerificationURIComplete: d.VerificationURI + "?" + url.Values{"user_code": {shown}}.Encode(),
		ExpiresIn:               int64(d.CodeTTL / time.Second),
		Interval:                rec.Interval,
	})
}

// errDeviceStateDown answers a device authorization request the StateStore
// could not store: temporarily_unavailable, as the token endpoint does.
var errDeviceStateDown = oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "the login state is unavailable; retry shortly")

// deviceGrant answers a token request with DeviceCodeGrantType (RFC 8628
// §3.4–3.5): authorization_pending until the user decides, slow_down (and 5 s
// more on the interval) for a poll that comes too soon, access_denied after
// a denial, expired_token after expires_in, and the tokens once: a device
// code that already got its tokens gets invalid_grant and, as a reused
// authorization code does, revokes the login session it started.
//
// As for a code exchange, the tokens are minted and stored first and the
// record marked issued last (the commit): a StateStore failing at any step
// answers temporarily_unavailable and leaves an approved device code
// redeemable, and of concurrent polls only the one whose swap wins hands
// anything out.
func (h *Handler) deviceGrant(ctx context.Context, client *Client, form url.Values) (*tokenResponse, *oauthError) {
	dc := form.Get("device_code")
	bad := oerr(http.StatusBadRequest, "invalid_grant", "the device code is invalid, already used, or was issued to another client")
	switch {
	case dc == "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "device_code is required")
	case len(dc) > maxTokenParamLen:
		return nil, bad
	case !client.DeviceFlow:
		return nil, oerr(http.StatusBadRequest, "unauthorized_client", "this client may not use the device authorization grant")
	}
	key := keyDevice + hashSecret(dc)
	// Every poll rewrites the record (its pacing), and the browser's
	// decision races with polls: each change is a compare-and-swap, retried
	// on a concurrent change.
	for range 8 {
		b, err := h.cfg.State.Get(ctx, key)
		if errors.Is(err, ErrStateNotFound) {
			return nil, bad
		}
		if err != nil {
			return nil, h.errStateDown(ctx, "loading the device code", err)
		}
		var rec deviceRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			h.log.ErrorContext(ctx, "server: token: unreadable device code record", "err", err)
			return nil, oerr(http.StatusInternalServerError, "server_error", "")
		}
		now := h.cfg.Now()
		if rec.ClientID != client.ID || !now.Before(rec.Expires.Add(h.cfg.DeviceFlow.CodeTTL)) {
			return nil, bad
		}
		switch rec.Status {
		case deviceIssued:
			if err := h.revokeSession(ctx, rec.SessionID); err != nil {
				return nil, h.errStateDown(ctx, "revoking the session of a reused device code", err)
			}
			h.log.WarnContext(ctx, "server: device code reused; login session revoked", "client_id", client.ID, "sid", rec.SessionID)
			return nil, bad
		case deviceDenied:
			return nil, oerr(http.StatusBadRequest, "access_denied", "the user denied the request")
		}
		if !now.Before(rec.Expires) {
			return nil, oerr(http.StatusBadRequest, "expired_token", "the device code expired; start the login again")
		}
		next := rec
		slow := false
		switch rec.Status {
		case deviceApproved:
			next.Status = deviceIssued // whatever the pace: the user is waiting
		default:
			// Pacing: a poll up to a fifth of the interval early is on time
			// (clients tick from when they sent, the server sees when it
			// arrived), and one extra poll per interval is let through:
			// x/oauth2 sends every poll twice when it probes how to
			// authenticate (HTTP Basic, then form parameters). Any other
			// early poll gets slow_down.
			iv := time.Duration(rec.Interval) * time.Second
			switch {
			case rec.NextPoll.IsZero() || !now.Before(rec.NextPoll):
				next.NextPoll, next.Spare = now.Add(iv-iv/5), true
			case rec.Spare:
				next.Spare = false
			default:
				slow = true
				next.Interval += int64(slowDownStep / time.Second)
				iv = time.Duration(next.Interval) * time.Second
				next.NextPoll, next.Spare = now.Add(iv-iv/5), false
			}
		}
		var resp *tokenResponse
		if rec.Status == deviceApproved {
			revoked, err := isRevoked(ctx, h.cfg.State, "", rec.Identity.SessionID, rec.Identity.Subject, rec.AuthTime)
			if err != nil {
				return nil, h.errStateDown(ctx, "revocation check", err)
			}
			if revoked {
				return nil, oerr(http.StatusBadRequest, "invalid_grant", "the sign-in was revoked; sign in again")
			}
			// The scopes granted as for the code flow (parseScope); an ID
			// token when "openid" is among them, without nonce (RFC 8628
			// has none).
			scopes, _ := parseScope(rec.Scope)
			rr := refreshRecord{ClientID: client.ID, SessionID: rec.SessionID, Identity: *rec.Identity, AuthTime: rec.AuthTime, Scopes: scopes}
			var e *oauthError
			if resp, e = h.mintAndIssue(ctx, rr, false, scopes, ""); e != nil {
				return nil, e
			}
		}
		nb, err := json.Marshal(next)
		if err != nil {
			return nil, oerr(http.StatusInternalServerError, "server_error", "")
		}
		ok, err := h.cfg.State.CompareAndSwap(ctx, key, b, nb, rec.Expires.Add(h.cfg.DeviceFlow.CodeTTL).Sub(now))
		if (err != nil || !ok) && resp != nil {
			h.dropRefresh(context.WithoutCancel(ctx), resp.RefreshToken)
		}
		if err != nil {
			return nil, h.errStateDown(ctx, "updating the device code", err)
		}
		if !ok {
			continue
		}
		if slow {
			return nil, oerr(http.StatusBadRequest, "slow_down", "polling too often; wait 5 seconds more between requests")
		}
		if resp == nil {
			return nil, oerr(http.StatusBadRequest, "authorization_pending", "the user has not yet approved the request")
		}
		h.log.InfoContext(ctx, "server: token issued", "grant_type", "device_code", "client_id", client.ID, "sub", rec.Identity.Subject, "sid", rec.SessionID)
		return resp, nil
	}
	// Only polls racing each other change the record this often.
	return nil, oerr(http.StatusBadRequest, "slow_down", "polling too often; wait 5 seconds more between requests")
}

// deviceEntryPage is the data of device.html.
type deviceEntryPage struct {
	Action, CSRFField, CSRFToken, UserCode, Error string
}

// deviceDonePage is the data of device-done.html.
type deviceDonePage struct {
	Approved                      bool
	ClientName, Account, UserCode string
}

// deviceVerify serves DevicePath.
func (h *Handler) deviceVerify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		h.deviceError(w, http.StatusMethodNotAllowed, "", "Bad request", "Method not allowed.")
		return
	}
	if !h.deviceFlowEnabled() {
		h.deviceError(w, http.StatusNotFound, "", "Not available", "This server does not offer device logins.")
		return
	}
	binding := h.browserBinding(w, r)
	page := deviceEntryPage{Action: DevicePath, CSRFField: CSRFField, CSRFToken: deviceCSRF(binding)}
	var typed string
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			h.deviceError(w, http.StatusBadRequest, "", "Bad request", "The form could not be read.")
			return
		}
		if c, err := r.Cookie(browserCookie); err != nil || !constantEqual(r.PostForm.Get(CSRFField), deviceCSRF(c.Value)) {
			h.deviceError(w, http.StatusForbidden, "", "Request refused", "The form was not sent from this page (CSRF check failed). Reload the page and enter the code again.")
			return
		}
		typed = r.PostForm.Get("user_code")
	} else {
		typed = r.URL.Query().Get("user_code")
	}
	if typed == "" {
		h.pages.render(w, http.StatusOK, "", "device.html", page)
		return
	}
	if len(typed) > 64 {
		typed = typed[:64]
	}
	page.UserCode = typed
	code, ok := normalizeUserCode(typed)
	if !ok {
		page.Error = "A code is 8 letters, like BCDF-GHJK. Check the code your device shows and try again."
		h.pages.render(w, http.StatusBadRequest, "", "device.html", page)
		return
	}
	page.UserCode = formatUserCode(code)
	src := h.cfg.DeviceFlow.ClientIP(r)
	// The entry is counted before the code is looked up, so entries sent
	// at once cannot all pass a limit none of them has yet counted; a right
	// code gives its count back.
	counted, limited, err := h.reserveUserCodeAttempt(ctx, src)
	if err != nil {
		h.unavailablePage(w, r, "device: counting a user code attempt", err)
		return
	}
	if limited {
		h.log.WarnContext(ctx, "server: device: user code attempts limited", "source", src)
		w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.DeviceFlow.AttemptWindow/time.Second)))
		page.Error = "Too many wrong codes were entered. Wait a few minutes, then try again."
		h.pages.render(w, http.StatusTooManyRequests, "", "device.html", page)
		return
	}
	dk, rec, err := h.lookupUserCode(ctx, code)
	if err != nil {
		h.unavailablePage(w, r, "device: looking up the user code", err)
		return
	}
	client, known := h.clients[rec.ClientID]
	if dk == "" || !known || !client.DeviceFlow {
		h.log.InfoContext(ctx, "server: device: wrong or expired user code entered", "source", src)
		page.Error = "That code is not valid or has expired. Check the code your device shows, or start the login on the device again."
		h.pages.render(w, http.StatusBadRequest, "", "device.html", page)
		return
	}
	h.releaseUserCodeAttempt(ctx, src, counted)
	now := h.cfg.Now()
	id := randomID()
	p := pendingAuth{
		ClientID: client.ID, Binding: hashSecret(binding), CSRF: randomID(),
		Expires: now.Add(h.cfg.PendingTTL), Device: dk, UserCode: formatUserCode(code),
	}
	if rec.Expires.Before(p.Expires) {
		p.Expires = rec.Expires
	}
	if err := h.putJSON(ctx, keyPending+id, p, p.Expires.Sub(now)); err != nil {
		h.unavailablePage(w, r, "device: storing the pending authorization", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, SignInPath+"?req="+id, http.StatusSeeOther)
}

// deviceError answers a device-verification page request with the error
// page (title, message) and the hint to start over on the device.
func (h *Handler) deviceError(w http.ResponseWriter, status int, clientName, title, message string) {
	h.pages.error(w, status, clientName, ErrorPage{Title: title, Message: message, Hint: deviceHint})
}

// lookupUserCode finds the pending device record of a normalized user code;
// dk is "" when there is none (unknown, expired or already decided).
func (h *Handler) lookupUserCode(ctx context.Context, code string) (dk string, rec deviceRecord, err error) {
	b, err := h.cfg.State.Get(ctx, keyDeviceUser+hashSecret(code))
	if errors.Is(err, ErrStateNotFound) {
		return "", rec, nil
	}
	if err != nil {
		return "", rec, err
	}
	rb, err := h.cfg.State.Get(ctx, keyDevice+string(b))
	if errors.Is(err, ErrStateNotFound) {
		return "", rec, nil
	}
	if err == nil {
		err = json.Unmarshal(rb, &rec)
	}
	if err != nil {
		return "", rec, err
	}
	if rec.Status != devicePending || !h.cfg.Now().Before(rec.Expires) {
		return "", rec, nil
	}
	return string(b), rec, nil
}

// deviceDecide records the consent decision of pending authorization p on
// its device record; exactly one decision per device code wins.
func (h *Handler) deviceDecide(w http.ResponseWriter, r *http.Request, p pendingAuth, client Client, approve bool) {
	ctx := r.Context()
	key := keyDevice + p.Device
	for range 8 {
		b, err := h.cfg.State.Get(ctx, key)
		var rec deviceRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		now := h.cfg.Now()
		switch {
		case errors.Is(err, ErrStateNotFound) || (err == nil && !now.Before(rec.Expires)):
			h.deviceError(w, http.StatusBadRequest, client.Name, "Code expired", "This code has expired. Start the login on your device again.")
			return
		case err != nil:
			h.unavailablePage(w, r, "device: loading the device code", err)
			return
		case rec.Status != devicePending:
			h.deviceError(w, http.StatusBadRequest, client.Name, "Code already used", "This code was already approved or denied.")
			return
		}
		next := rec
		if approve {
			next.Status, next.Identity, next.AuthTime, next.SessionID = deviceApproved, p.Identity, p.AuthTime, randomID()
		} else {
			next.Status = deviceDenied
		}
		nb, err := json.Marshal(next)
		if err != nil {
			h.deviceError(w, http.StatusInternalServerError, client.Name, "Server error", "The server could not store the decision.")
			return
		}
		ok, err := h.cfg.State.CompareAndSwap(ctx, key, b, nb, rec.Expires.Add(h.cfg.DeviceFlow.CodeTTL).Sub(now))
		if err != nil {
			h.unavailablePage(w, r, "device: storing the decision", err)
			return
		}
		if !ok {
			continue // a poll changed the record meanwhile
		}
		// The code has done its job: it cannot be entered again.
		if err := h.cfg.State.Delete(ctx, keyDeviceUser+rec.UserKey); err != nil {
			h.log.ErrorContext(ctx, "server: device: deleting user code", "err", err)
		}
		if approve {
			h.log.InfoContext(ctx, "server: device authorization approved", "client_id", client.ID, "sub", p.Identity.Subject, "sid", next.SessionID)
		} else {
			h.log.InfoContext(ctx, "server: device authorization denied", "client_id", client.ID, "sub", p.Identity.Subject)
		}
		h.pages.render(w, http.StatusOK, client.Name, "device-done.html", deviceDonePage{
			Approved: approve, ClientName: client.Name, Account: accountName(p.Identity), UserCode: p.UserCode,
		})
		return
	}
	h.deviceError(w, http.StatusServiceUnavailable, client.Name, "Server busy", "The server could not store the decision. Go back and try again.")
}

// browserBinding returns the browser's binding cookie value, setting a new
// one when the browser has none.
func (h *Handler) browserBinding(w http.ResponseWriter, r *http.Request) string {
	binding := ""
	if c, err := r.Cookie(browserCookie); err == nil && isRandomID(c.Value) {
		binding = c.Value
	} else {
		binding = randomID()
	}
	http.SetCookie(w, &http.Cookie{
		Name: browserCookie, Value: binding, Path: "/oauth", MaxAge: int(h.cfg.PendingTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(h.cfg.Issuer, "https://"),
	})
	return binding
}

// deviceCSRF is the CSRF token of the code entry form: derived from the
// HttpOnly browser cookie, which another site can neither read nor set.
func deviceCSRF(binding string) string { return hashSecret("keyloop-device-entry:" + binding) }

// userCodeAlphabet is RFC 8628 §6.1's example alphabet: consonants only.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen is the number of letters of a user code.
const userCodeLen = 8

// newUserCode returns userCodeLen letters from userCodeAlphabet, uniformly.
func newUserCode() string {
	out := make([]byte, 0, userCodeLen)
	buf := make([]byte, 2*userCodeLen)
	for len(out) < userCodeLen {
		rand.Read(buf) // never fails (crypto/rand)
		for _, c := range buf {
			// 240 = 12·20: rejecting larger bytes keeps every letter
			// equally likely.
			if c < 240 && len(out) < userCodeLen {
				out = append(out, userCodeAlphabet[c%20])
			}
		}
	}
	return string(out)
}

// normalizeUserCode turns what a user typed into a user code: letters are
// upper-cased, spaces, dashes and other punctuation dropped. It reports
// false unless exactly userCodeLen letters of the alphabet remain.
func normalizeUserCode(s string) (string, bool) {
	var b strings.Builder
	for _, c := range s {
		switch {
		case unicode.IsSpace(c) || unicode.IsPunct(c) || unicode.In(c, unicode.Pd):
			continue
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		if c > unicode.MaxASCII || !strings.ContainsRune(userCodeAlphabet, c) || b.Len() == userCodeLen {
			return "", false
		}
		b.WriteRune(c)
	}
	return b.String(), b.Len() == userCodeLen
}

// formatUserCode shows a normalized code as XXXX-XXXX.
func formatUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// reserveUserCodeAttempt counts one user code entered from src against the
// per-source limit, then the global one, and returns the counters it
// counted on, or reports whether a limit was already reached (the entry is
// refused, and counts against neither). The
// count is taken before the code is checked: a right code gives it back
// (releaseUserCodeAttempt), so the limits count wrong codes. A counter that
// cannot be changed is an error: the entry is not checked.
func (h *Handler) reserveUserCodeAttempt(ctx context.Context, src string) (counted []attemptCounter, limited bool, err error) {
	var taken []attemptCounter
	for _, l := range h.attemptCounters(src) {
		if l.max < 0 {
			continue
		}
		n, err := h.increment(ctx, l.key, 1, 2*h.cfg.DeviceFlow.AttemptWindow)
		if err == nil && n <= l.max {
			taken = append(taken, l)
			continue
		}
		if err == nil {
			taken = append(taken, l)
		}
		h.releaseUserCodeAttempt(ctx, src, taken)
		if err != nil && !errors.Is(err, errCounterContended) {
			return nil, false, err
		}
		return nil, true, nil // over the limit, or contended: many entries at once
	}
	return taken, false, nil
}

// releaseUserCodeAttempt gives back the count reserveUserCodeAttempt took on
// counters (the keys of the window it counted in).
func (h *Handler) releaseUserCodeAttempt(ctx context.Context, src string, counters []attemptCounter) {
	for _, l := range counters {
		if _, err := h.increment(ctx, l.key, -1, 2*h.cfg.DeviceFlow.AttemptWindow); err != nil {
			h.log.ErrorContext(ctx, "server: device: releasing a user code attempt", "source", src, "err", err)
		}
	}
}

type attemptCounter struct {
	key string
	max int
}

func (h *Handler) attemptCounters(src string) []attemptCounter {
	d := h.cfg.DeviceFlow
	window := strconv.FormatInt(h.cfg.Now().UnixNano()/int64(d.AttemptWindow), 10)
	return []attemptCounter{
		{keyDeviceTries + "src:" + hashSecret(src) + ":" + window, d.MaxAttempts},
		{keyDeviceTries + "all:" + window, d.MaxAttemptsTotal},
	}
}

// errCounterContended is returned by increment when other changes to the
// counter kept winning.
var errCounterContended = errors.New("server: counter contended")

// increment adds delta to the decimal counter under key, atomically, and
// returns its new value.
func (h *Handler) increment(ctx context.Context, key string, delta int, ttl time.Duration) (int, error) {
	for range 16 {
		old, err := h.cfg.State.Get(ctx, key)
		n := 0
		switch {
		case errors.Is(err, ErrStateNotFound):
			old = nil
		case err != nil:
			return 0, err
		default:
			n, _ = strconv.Atoi(string(old))
		}
		ok, err := h.cfg.State.CompareAndSwap(ctx, key, old, []byte(strconv.Itoa(n+delta)), ttl)
		if err != nil {
			return 0, err
		}
		if ok {
			return n + delta, nil
		}
	}
	return 0, errCounterContended
}

// deviceHint is the device flow's error pages' hint: the login runs on the
// device, not in this browser's terminal.
const deviceHint = "You can close this window and start the login again on your device."

// accountName is how the consent and result pages name the signed-in user.
func accountName(id *Identity) string {
	switch {
	case id == nil:
		return ""
	case id.Email != "":
		return id.Email
	case id.Name != "":
		return id.Name
	}
	return id.Subject
}

// grantTypes are the grant types the handler offers (grant_types_supported).
func (h *Handler) grantTypes() []string {
	gt := []string{"authorization_code", "refresh_token"}
	if h.deviceFlowEnabled() {
		gt = append(gt, DeviceCodeGrantType)
	}
	return gt
}
