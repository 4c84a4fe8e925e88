package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyloop/keyloop/internal/confirm"
)

// Bounds on authorization request parameters.
const (
	maxQueryLen = 4096
	maxStateLen = 512
	maxScopeLen = 1024
	maxNonceLen = 512
)

// pendingAuth is an authorization request waiting for sign-in and consent.
type pendingAuth struct {
	ClientID    string    `json:"client_id"`
	RedirectURI string    `json:"redirect_uri"`
	State       string    `json:"state"`
	Challenge   string    `json:"code_challenge"`
	Binding     string    `json:"binding"` // hash of the browser cookie
	CSRF        string    `json:"csrf"`
	Expires     time.Time `json:"expires"`
	Identity    *Identity `json:"identity,omitempty"`
	AuthTime    time.Time `json:"auth_time"`
	Scopes      []string  `json:"scopes,omitempty"` // granted: see parseScope
	Nonce       string    `json:"nonce,omitempty"`  // OpenID Connect, for the ID token
	// Device and UserCode are set for a device authorization (DevicePath):
	// the device record's key part and the user code as shown.
	Device   string `json:"device,omitempty"`
	UserCode string `json:"user_code,omitempty"`
	// AuthAfter is the oldest authentication the client accepts
	// (prompt=login, max_age); zero when it did not say.
	AuthAfter time.Time `json:"auth_after,omitzero"`
}

// codeRecord is what an authorization code stands for.
type codeRecord struct {
	ClientID    string    `json:"client_id"`
	RedirectURI string    `json:"redirect_uri"`
	Challenge   string    `json:"code_challenge"`
	Identity    Identity  `json:"identity"`
	SessionID   string    `json:"sid"`
	AuthTime    time.Time `json:"auth_time"`
	Expires     time.Time `json:"expires"`
	Scopes      []string  `json:"scopes,omitempty"`
	Nonce       string    `json:"nonce,omitempty"`
}

// authorize serves AuthorizePath. The request must be a GET with client_id
// (a registered client), redirect_uri (a loopback URI, see
// validateRedirectURI), response_type=code, code_challenge_method=S256, a
// 43-character code_challenge, and a state of 1–512 printable ASCII
// characters, each at most once. state is required (not just recommended)
// because the CLI derives the consent page's confirmation code from it.
//
// OpenID Connect parameters: scope (see parseScope: unknown values are
// ignored, malformed ones are invalid_scope), nonce (at most 512 printable
// ASCII characters, echoed in the ID token), response_mode (only "query"),
// prompt ("none" is answered with consent_required, since every login shows
// the consent page; "login" asks the Authenticator for a fresh
// authentication, see SignInPrompt.AuthenticatedAfter; "consent" and
// "select_account" are accepted, the consent page being shown as always),
// max_age (seconds, like prompt=login when exceeded), and request /
// request_uri (refused with
// request_not_supported / request_uri_not_supported, OpenID Connect Core
// §6.1, §6.2). Other parameters (login_hint, ui_locales, display, acr_values,
// id_token_hint, claims) are ignored.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		h.pages.error(w, http.StatusMethodNotAllowed, "", ErrorPage{Title: "Bad request", Message: "The authorization request must be a GET request."})
		return
	}
	if len(r.URL.RawQuery) > maxQueryLen {
		h.pages.error(w, http.StatusBadRequest, "", ErrorPage{Title: "Bad request", Message: "The authorization request is too long."})
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.pages.error(w, http.StatusBadRequest, "", ErrorPage{Title: "Bad request", Message: "The authorization request is malformed."})
		return
	}
	client, ok := h.clients[q.Get("client_id")]
	if len(q["client_id"]) != 1 || !ok {
		h.unknownClient(w, r, q)
		return
	}
	if len(q["redirect_uri"]) != 1 {
		h.pages.error(w, http.StatusBadRequest, client.Name, ErrorPage{Title: "Bad request", Message: "The authorization request must carry exactly one redirect_uri."})
		return
	}
	redirect, err := validateRedirectURI(q.Get("redirect_uri"), client.RedirectHosts)
	if err != nil {
		h.log.InfoContext(ctx, "server: authorize: redirect_uri refused", "client_id", client.ID, "err", err)
		h.pages.error(w, http.StatusBadRequest, client.Name, ErrorPage{
			Title:   "Bad request",
			Message: client.Name + " asked this server to send you back to an address it does not allow: the " + strings.TrimPrefix(err.Error(), errRedirectURI.Error()+": ") + ".",
			Hint:    "This is a problem of " + client.Name + "'s login configuration (its loopback redirect address); starting the login again will not help until it is fixed.",
		})
		return
	}
	// From here on, errors go back to the CLI.
	fail := func(code, desc string, withState bool) {
		p := url.Values{"error": {code}, "error_description": {desc}}
		if withState {
			p.Set("state", q.Get("state"))
		}
		h.log.InfoContext(ctx, "server: authorize: refused", "client_id", client.ID, "error", code, "reason", desc)
		h.redirectTo(w, redirect, p)
	}
	state := q.Get("state")
	switch {
	case len(q["state"]) > 1:
		fail("invalid_request", "state given more than once", false)
		return
	case state == "":
		fail("invalid_request", "state is required", false)
		return
	case len(state) > maxStateLen || !printableASCII(state):
		fail("invalid_request", "state must be 1-512 printable ASCII characters", false)
		return
	}
	for k, vs := range q {
		if len(vs) > 1 {
			fail("invalid_request", duplicateParam(k), true)
			return
		}
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		fail("invalid_request", "response_type is required", true)
		return
	case rt != "code":
		fail("unsupported_response_type", "only response_type=code is supported", true)
		return
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required", true)
		return
	}
	if !isS256Challenge(q.Get("code_challenge")) {
		fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)", true)
		return
	}
	scopes, ok := parseScope(q.Get("scope"))
	switch {
	case len(q.Get("scope")) > maxScopeLen:
		fail("invalid_scope", "scope too long", true)
		return
	case !ok:
		fail("invalid_scope", "scope must be space-separated scope tokens (RFC 6749 section 3.3)", true)
		return
	}
	nonce := q.Get("nonce")
	if len(nonce) > maxNonceLen || !printableASCII(nonce) {
		fail("invalid_request", "nonce must be at most 512 printable ASCII characters", true)
		return
	}
	if m := q.Get("response_mode"); m != "" && m != "query" {
		fail("invalid_request", "only response_mode=query is supported", true)
		return
	}
	if q.Has("request") {
		fail("request_not_supported", "request objects are not supported", true)
		return
	}
	if q.Has("request_uri") {
		fail("request_uri_not_supported", "request_uri is not supported", true)
		return
	}
	prompt := strings.Fields(q.Get("prompt"))
	if slices.Contains(prompt, "none") {
		if len(prompt) > 1 {
			fail("invalid_request", "prompt=none cannot be combined with other prompt values", true)
		} else {
			fail("consent_required", "every login needs the user's consent in the browser", true)
		}
		return
	}
	now := h.cfg.Now()
	var authAfter time.Time
	if ma := q.Get("max_age"); ma != "" {
		n, err := strconv.ParseUint(ma, 10, 31)
		if err != nil {
			fail("invalid_request", "max_age must be a number of seconds", true)
			return
		}
		authAfter = now.Add(-time.Duration(n) * time.Second)
	}
	if slices.Contains(prompt, "login") {
		authAfter = now
	}
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
	id := randomID()
	p := pendingAuth{
		ClientID: client.ID, RedirectURI: q.Get("redirect_uri"), State: state, Challenge: q.Get("code_challenge"),
		Binding: hashSecret(binding), CSRF: randomID(), Expires: h.cfg.Now().Add(h.cfg.PendingTTL),
		Scopes: scopes, Nonce: nonce, AuthAfter: authAfter,
	}
	if err := h.putJSON(ctx, keyPending+id, p, h.cfg.PendingTTL); err != nil {
		// RFC 6749 §4.1.2.1: the CLI learns why, and can say so.
		h.log.ErrorContext(ctx, "server: state store unavailable", "step", "storing the pending authorization", "err", err)
		fail("temporarily_unavailable", "the server cannot reach its state store; try again in a few seconds", true)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, SignInPath+"?req="+id, http.StatusFound)
}

// duplicateParam describes a repeated parameter for error_description,
// naming it only when the name is plain: the name comes from the request,
// and RFC 6749 §5.2 limits error_description to printable ASCII without
// '"' and '\\'.
func duplicateParam(name string) string {
	if len(name) > 32 {
		return "a parameter was given more than once"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return "a parameter was given more than once"
		}
	}
	return "parameter " + name + " given more than once"
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isS256Challenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// signIn serves SignInPath: the Authenticator's sign-in step, then the
// consent page, then the decision.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		h.pages.error(w, http.StatusMethodNotAllowed, "", ErrorPage{Title: "Bad request", Message: "This page only answers GET and POST requests."})
		return
	}
	id := r.URL.Query().Get("req")
	clientName := "" // known once the pending request is loaded
	expired := func() {
		h.pages.error(w, http.StatusBadRequest, clientName, ErrorPage{Title: "Login request expired", Message: "This login request has expired or was already used."})
	}
	if !isRandomID(id) {
		expired()
		return
	}
	b, err := h.cfg.State.Get(ctx, keyPending+id)
	var p pendingAuth
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if errors.Is(err, ErrStateNotFound) || (err == nil && !h.cfg.Now().Before(p.Expires)) {
		expired()
		return
	}
	if err != nil {
		if errors.As(err, new(*json.SyntaxError)) || errors.As(err, new(*json.UnmarshalTypeError)) {
			h.log.ErrorContext(ctx, "server: signin: unreadable pending authorization", "err", err)
			h.pages.error(w, http.StatusInternalServerError, "", ErrorPage{Title: "Server error", Message: "The server could not read this login request."})
			return
		}
		h.unavailablePage(w, r, "loading the pending authorization", err)
		return
	}
	client := h.clients[p.ClientID]
	clientName = client.Name
	c, cerr := r.Cookie(browserCookie)
	if cerr != nil || !constantEqual(hashSecret(c.Value), p.Binding) {
		h.pages.error(w, http.StatusForbidden, clientName, ErrorPage{Title: "Wrong browser", Message: "This login request was started in a different browser."})
		return
	}
	action := SignInPath + "?req=" + id
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			h.pages.error(w, http.StatusBadRequest, clientName, ErrorPage{Title: "Bad request", Message: "The form could not be read.", Retry: action})
			return
		}
		if !constantEqual(r.PostForm.Get(CSRFField), p.CSRF) {
			h.pages.error(w, http.StatusForbidden, clientName, ErrorPage{Title: "Request refused", Message: "The form was not sent from this login page (its CSRF token is missing or wrong).", Retry: action})
			return
		}
	}
	if p.Identity == nil {
		nonce := setPageHeaders(w)
		ident, err := h.cfg.Authenticator.Authenticate(w, r, SignInPrompt{
			ClientName: client.Name, Action: action, CSRFField: CSRFField, CSRFToken: p.CSRF, Nonce: nonce,
			Render: func(w http.ResponseWriter, status int, page string, data any) error {
				return h.pages.execute(w, status, client.Name, nonce, page, data)
			},
			AuthenticatedAfter: p.AuthAfter,
		})
		if errors.Is(err, ErrResponded) {
			return
		}
		if err == nil && (ident == nil || ident.Subject == "") {
			err = errors.New("server: authenticator returned no subject")
		}
		var rerr *renderError
		switch {
		case errors.As(err, &rerr):
			h.log.ErrorContext(ctx, "server: signin: the authenticator's page could not be rendered", "client_id", client.ID, "err", err)
			h.pages.error(w, http.StatusInternalServerError, clientName, ErrorPage{Title: "Server error", Message: "The sign-in page could not be shown.", Retry: action})
			return
		case err != nil:
			h.log.InfoContext(ctx, "server: signin: authentication failed", "client_id", client.ID, "err", err)
			h.pages.error(w, http.StatusBadRequest, clientName, ErrorPage{
				Title: "Sign-in failed", Message: err.Error(), Retry: action,
				Hint: "The login in your terminal is still waiting: try again, or close this window and press Ctrl+C there.",
			})
			return
		}
		if !p.AuthAfter.IsZero() && (ident.AuthTime.IsZero() || ident.AuthTime.Before(p.AuthAfter)) {
			// OpenID Connect Core §3.1.2.1: an OP that cannot
			// re-authenticate the user answers login_required.
			h.refuseToClient(w, r, id, p, "login_required", "the sign-in layer could not re-authenticate the user as the client asked (prompt=login or max_age)")
			return
		}
		p.Identity, p.AuthTime = ident, h.cfg.Now()
		ttl := p.Expires.Sub(h.cfg.Now())
		nb, err := json.Marshal(p)
		if err != nil {
			h.log.ErrorContext(ctx, "server: signin: encoding pending authorization", "err", err)
			h.pages.error(w, http.StatusInternalServerError, clientName, ErrorPage{Title: "Server error", Message: "The server could not store the sign-in."})
			return
		}
		if ttl <= 0 {
			expired()
			return
		}
		// Only over the very record this request read: a concurrent consent
		// decision may have taken it (a code is out), or another sign-in
		// may have stored an identity; a plain Put would bring the request
		// back to life.
		swapped, err := h.cfg.State.CompareAndSwap(ctx, keyPending+id, b, nb, ttl)
		if err != nil {
			h.unavailablePage(w, r, "storing the sign-in", err)
			return
		}
		if !swapped {
			// Show whatever the request has become: the consent page, or
			// "expired or already used".
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, action, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, action, http.StatusSeeOther)
			return
		}
		h.consent(w, p, client, action)
		return
	}
	decision := ""
	if r.Method == http.MethodPost {
		decision = r.PostForm.Get("decision")
	}
	if decision != "authorize" && decision != "deny" {
		h.consent(w, p, client, action)
		return
	}
	if p.Device != "" {
		if _, err := h.cfg.State.Take(ctx, keyPending+id); err != nil {
			if errors.Is(err, ErrStateNotFound) {
				expired() // a concurrent decision won
				return
			}
			h.unavailablePage(w, r, "taking the pending authorization", err)
			return
		}
		h.deviceDecide(w, r, p, client, decision == "authorize")
		return
	}
	redirect, err := url.Parse(p.RedirectURI)
	if err != nil {
		h.pages.error(w, http.StatusInternalServerError, clientName, ErrorPage{Title: "Server error", Message: "The stored redirect address is unusable."})
		return
	}
	// As at the token endpoint, taking the pending authorization is the
	// commit: the code is stored first, so a state store failing before the
	// Take leaves the request answerable, and of concurrent decisions only
	// the one whose Take wins sends anything to the CLI.
	var code, sid, hc string
	if decision == "authorize" {
		code, sid = randomID(), randomID()
		hc = hashSecret(code)
		rec := codeRecord{
			ClientID: p.ClientID, RedirectURI: p.RedirectURI, Challenge: p.Challenge, Identity: *p.Identity,
			SessionID: sid, AuthTime: p.AuthTime, Expires: h.cfg.Now().Add(h.cfg.CodeTTL),
			Scopes: p.Scopes, Nonce: p.Nonce,
		}
		if err := h.putJSON(ctx, keyCode+hc, rec, h.cfg.CodeTTL); err != nil {
			h.unavailablePage(w, r, "storing the code", err)
			return
		}
	}
	if _, err := h.cfg.State.Take(ctx, keyPending+id); err != nil {
		if hc != "" {
			h.cfg.State.Delete(context.WithoutCancel(ctx), keyCode+hc) // never handed out
		}
		if errors.Is(err, ErrStateNotFound) {
			expired() // a concurrent decision won
			return
		}
		h.unavailablePage(w, r, "taking the pending authorization", err)
		return
	}
	if decision == "deny" {
		h.log.InfoContext(ctx, "server: authorization denied", "client_id", client.ID, "sub", p.Identity.Subject)
		h.redirectTo(w, redirect, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}, "state": {p.State}})
		return
	}
	h.log.InfoContext(ctx, "server: authorization approved", "client_id", client.ID, "sub", p.Identity.Subject, "sid", sid)
	h.redirectTo(w, redirect, url.Values{"code": {code}, "state": {p.State}})
}

// refuseToClient ends the pending authorization id and sends the browser
// back to the client with an error.
func (h *Handler) refuseToClient(w http.ResponseWriter, r *http.Request, id string, p pendingAuth, code, desc string) {
	if _, err := h.cfg.State.Take(r.Context(), keyPending+id); errors.Is(err, ErrStateNotFound) {
		h.pages.error(w, http.StatusBadRequest, h.clientName(p.ClientID), ErrorPage{Title: "Login request expired", Message: "This login request has expired or was already used."})
		return
	} else if err != nil {
		h.unavailablePage(w, r, "ending the pending authorization", err)
		return
	}
	redirect, err := url.Parse(p.RedirectURI)
	if err != nil {
		h.pages.error(w, http.StatusInternalServerError, h.clientName(p.ClientID), ErrorPage{Title: "Server error", Message: "The stored redirect address is unusable."})
		return
	}
	h.log.InfoContext(r.Context(), "server: signin: refused", "client_id", p.ClientID, "error", code, "reason", desc)
	h.redirectTo(w, redirect, url.Values{"error": {code}, "error_description": {desc}, "state": {p.State}})
}

// unavailablePage logs a StateStore failure on a browser step and answers
// with a page saying so (HTTP 503, Retry-After).
func (h *Handler) unavailablePage(w http.ResponseWriter, r *http.Request, step string, err error) {
	h.log.ErrorContext(r.Context(), "server: state store unavailable", "step", step, "err", err)
	w.Header().Set("Retry-After", retryAfter)
	h.pages.error(w, http.StatusServiceUnavailable, "", ErrorPage{Title: "Temporarily unavailable",
		Message: "The sign-in service cannot reach its storage right now, so nothing was approved. Reload this page in a few seconds, or start the login again from your terminal."})
}

func (h *Handler) consent(w http.ResponseWriter, p pendingAuth, client Client, action string) {
	code := confirm.Code(p.State)
	if p.Device != "" {
		code = p.UserCode
	}
	h.pages.render(w, http.StatusOK, client.Name, "consent.html", ConsentPage{
		ClientName: client.Name, Account: accountName(p.Identity), Code: code,
		Action: action, CSRFField: CSRFField, CSRFToken: p.CSRF, Device: p.Device != "",
	})
}

// unknownClient answers an authorization request whose client_id is not
// registered. RFC 6749 §4.1.2.1: the server tells the user and must not
// redirect to the request's (unverifiable) redirect URI by itself. When that
// URI is a valid loopback address and the request has a usable state, the
// page offers a button back to it with error=unauthorized_client, so the CLI
// stops waiting and shows the error.
func (h *Handler) unknownClient(w http.ResponseWriter, r *http.Request, q url.Values) {
	id := q.Get("client_id")
	named := len(q["client_id"]) == 1 && clientIDRE.MatchString(id)
	logged := id
	if len(logged) > 64 {
		logged = logged[:64] + "…"
	}
	h.log.WarnContext(r.Context(), "server: authorize: unknown client; register it in Config.Clients if it is yours", "client_id", logged)

	page := ErrorPage{Title: "Unknown application"}
	if named {
		page.Message = "This server has no application with the ID “" + id + "”, so it cannot sign you in to it."
		page.Hint = "If you run this server, register the client ID “" + id + "” and start the login again; otherwise check which server the command in your terminal uses."
	} else {
		page.Message = "The application that sent you here did not say which registered application it is (its client_id is missing or malformed)."
		page.Hint = "Check the command's login configuration (its client ID) and start the login again."
	}
	state := q.Get("state")
	if len(q["redirect_uri"]) == 1 && len(q["state"]) == 1 && state != "" && len(state) <= maxStateLen && printableASCII(state) {
		if u, err := validateRedirectURI(q.Get("redirect_uri"), nil); err == nil {
			desc := "the client_id is not registered at " + h.cfg.Issuer
			if named {
				desc = "client_id " + id + " is not registered at " + h.cfg.Issuer
			}
			v := u.Query()
			v.Set("error", "unauthorized_client")
			v.Set("error_description", desc)
			v.Set("state", state)
			v.Set("iss", h.cfg.Issuer)
			u.RawQuery = v.Encode()
			page.Return = u.String()
			page.Hint += " “Back to your terminal” ends the login waiting there and shows this error."
		}
	}
	h.pages.error(w, http.StatusBadRequest, "", page)
}

// clientName is the registered name of clientID, for page branding; empty
// when it is not registered.
func (h *Handler) clientName(clientID string) string { return h.clients[clientID].Name }
