package clerktest

import (
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type apiError struct {
	Message     string `json:"message"`
	LongMessage string `json:"long_message"`
	Code        string `json:"code"`
}

type apiErrorBody struct {
	status       int
	Errors       []apiError `json:"errors"`
	ClerkTraceID string     `json:"clerk_trace_id"`
}

func notFound(what string) *apiErrorBody {
	return &apiErrorBody{status: http.StatusNotFound, Errors: []apiError{{
		Message: "not found", LongMessage: "The requested " + what + " could not be found", Code: "resource_not_found",
	}}}
}

func writeAPIError(w http.ResponseWriter, e *apiErrorBody) {
	e.ClerkTraceID = randomID(16)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Clerk-Trace-Id", e.ClerkTraceID)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *Fake) routes() http.Handler {
	mux := http.NewServeMux()
	// Backend API.
	mux.HandleFunc("GET /v1/jwks", f.backend(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f.JWKS())
	}))
	mux.HandleFunc("GET /v1/jwt_templates", f.backend(f.listTemplates))
	mux.HandleFunc("GET /v1/sessions/{id}", f.backend(func(w http.ResponseWriter, r *http.Request) {
		s, ok := f.Session(r.PathValue("id"))
		if !ok {
			writeAPIError(w, notFound("session"))
			return
		}
		writeJSON(w, sessionJSON(&s))
	}))
	mux.HandleFunc("POST /v1/sessions/{id}/tokens/{template}", f.backend(f.backendTemplateToken))
	mux.HandleFunc("GET /v1/users/{id}", f.backend(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		u, ok := f.users[r.PathValue("id")]
		var uj map[string]any
		if ok {
			uj = userJSON(u)
		}
		f.mu.Unlock()
		if !ok {
			writeAPIError(w, notFound("resource"))
			return
		}
		writeJSON(w, uj)
	}))
	// Frontend API.
	mux.HandleFunc("GET /.well-known/jwks.json", f.frontend(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(f.JWKS())
	}))
	mux.HandleFunc("OPTIONS /v1/client/", f.frontend(f.cors(func(w http.ResponseWriter, r *http.Request) {})))
	mux.HandleFunc("GET /v1/client", f.frontend(f.cors(f.getClient)))
	mux.HandleFunc("GET /v1/client/sync", f.frontend(f.clientSync))
	mux.HandleFunc("POST /v1/client/sessions/{id}/tokens", f.frontend(f.cors(f.clientToken)))
	mux.HandleFunc("POST /v1/client/sessions/{id}/tokens/{template}", f.frontend(f.cors(f.clientTemplateToken)))
	mux.HandleFunc("GET "+ClerkJSPath, f.frontend(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(clerkJS)
	}))
	// The hosted sign-in page (Clerk's Account Portal), not proxied.
	mux.HandleFunc("GET /sign-in", f.signInPage)
	mux.HandleFunc("POST /sign-in", f.signInSubmit)
	mux.HandleFunc("POST /sign-in/tasks", f.taskSubmit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := r.Method + " " + r.URL.Path
		if q := r.URL.Query(); len(q) > 0 {
			names := make([]string, 0, len(q))
			for k := range q {
				names = append(names, k)
			}
			sort.Strings(names)
			entry += "?" + strings.Join(names, "&")
		}
		f.mu.Lock()
		f.requests = append(f.requests, entry)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// backend checks the Backend API's bearer secret key.
func (f *Fake) backend(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.SecretKey {
			writeAPIError(w, &apiErrorBody{status: http.StatusUnauthorized, Errors: []apiError{{
				Message: "Invalid authentication", LongMessage: "Unable to authenticate the request, you need to supply an active API key", Code: "authentication_invalid",
			}}})
			return
		}
		h(w, r)
	}
}

// frontend answers Frontend API requests. Once a proxy is configured it
// answers only requests forwarded by it, with the headers Clerk's proxy guide
// requires (Clerk-Proxy-Url, Clerk-Secret-Key): the CNAME a proxy replaces
// no longer leads to the instance.
func (f *Fake) frontend(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		proxy := f.proxyURL
		f.mu.Unlock()
		if proxy == "" {
			h(w, r)
			return
		}
		if strings.TrimSuffix(r.Header.Get("Clerk-Proxy-Url"), "/") != proxy {
			writeAPIError(w, &apiErrorBody{status: http.StatusBadRequest, Errors: []apiError{{
				Message: "Invalid host", LongMessage: "This instance's Frontend API is proxied; send requests through " + proxy, Code: "host_invalid",
			}}})
			return
		}
		if r.Header.Get("Clerk-Secret-Key") != f.SecretKey {
			writeAPIError(w, &apiErrorBody{status: http.StatusUnauthorized, Errors: []apiError{{
				Message: "Invalid proxy", LongMessage: "The proxy must send the instance's secret key in Clerk-Secret-Key", Code: "proxy_request_invalid",
			}}})
			return
		}
		h(w, r)
	}
}

func (f *Fake) listTemplates(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(f.opts.Templates))
	for n := range f.opts.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	data := []map[string]any{}
	for _, n := range names {
		t := f.opts.Templates[n]
		life := int64(t.Lifetime / time.Second)
		if life == 0 {
			life = 60
		}
		claims, _ := json.Marshal(t.Claims)
		data = append(data, map[string]any{
			"object": "jwt_template", "id": "jtmp_" + n, "name": n, "claims": json.RawMessage(claims),
			"lifetime": life, "allowed_clock_skew": 5, "custom_signing_key": t.CustomSigningKey,
			"signing_algorithm": "RS256", "created_at": 0, "updated_at": 0,
		})
	}
	total := len(data)
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 {
		limit = 10 // the Backend API's default page size
	}
	offset = min(max(offset, 0), total)
	data = data[offset:min(offset+limit, total)]
	if r.URL.Query().Get("paginated") == "true" {
		writeJSON(w, map[string]any{"data": data, "total_count": total})
		return
	}
	writeJSON(w, data)
}

func (f *Fake) backendTemplateToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ExpiresInSeconds *int64 `json:"expires_in_seconds"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		writeAPIError(w, &apiErrorBody{status: http.StatusBadRequest, Errors: []apiError{{
			Message: "Request body invalid", LongMessage: "The request body is invalid. Please consult the API documentation for more information.", Code: "request_body_invalid",
		}}})
		return
	}
	var expiresIn time.Duration
	if body.ExpiresInSeconds != nil {
		n := *body.ExpiresInSeconds
		if n < 30 || n > 315360000 {
			writeAPIError(w, &apiErrorBody{status: http.StatusUnprocessableEntity, Errors: []apiError{{
				Message: "is invalid", LongMessage: "expires_in_seconds must be between 30 and 315360000", Code: "form_param_value_invalid",
			}}})
			return
		}
		expiresIn = time.Duration(n) * time.Second
	}
	// A server-to-server request has no Origin: no azp.
	tok, apiErr := f.templateToken(r.PathValue("id"), r.PathValue("template"), expiresIn, "", "")
	if apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	writeJSON(w, map[string]any{"object": "token", "jwt": tok})
}

func (f *Fake) originAllowed(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || origin == "" || u.Host == "" || u.Path != "" {
		return false
	}
	if f.opts.AllowedOrigins == nil {
		return (u.Scheme == "http" || u.Scheme == "https") && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")
	}
	return slices.Contains(f.opts.AllowedOrigins, origin)
}

// cors answers credentialed CORS for allowed origins, as the Frontend API
// does for the browser SDK.
func (f *Fake) cors(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !f.originAllowed(origin) {
				writeAPIError(w, &apiErrorBody{status: http.StatusForbidden, Errors: []apiError{{
					Message: "Origin not allowed", LongMessage: "The request origin is not an allowed origin of this instance", Code: "origin_invalid",
				}}})
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
			w.Header().Set("Vary", "Origin")
		}
		h(w, r)
	}
}

func (f *Fake) clientID(r *http.Request) string {
	c, err := r.Cookie(ClientCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// requestIssuer is the iss of tokens the Frontend API mints for r: the
// proxy URL when the request came through the proxy, else the instance's.
func (f *Fake) requestIssuer(r *http.Request) string {
	if p := strings.TrimSuffix(r.Header.Get("Clerk-Proxy-Url"), "/"); p != "" {
		return p
	}
	return f.Issuer()
}

// getClient answers the browser SDK's GET /v1/client: the browser's live
// sessions (active, and pending their tasks), each with its user, its tasks
// and its last active token. That token was minted when the session was
// last used, for the origin it signed in from (its azp), which is why
// clerk-js's cached token may not be for the page asking.
func (f *Fake) getClient(w http.ResponseWriter, r *http.Request) {
	cid := f.clientID(r)
	iss := f.requestIssuer(r)
	f.mu.Lock()
	var live []Session
	var users []map[string]any
	for _, id := range f.clients[cid] {
		s := f.refreshLocked(f.sessions[id])
		u, ok := f.users[s.UserID]
		if (s.Status != StatusActive && s.Status != StatusPending) || !ok {
			continue
		}
		live = append(live, *s)
		users = append(users, userJSON(u))
	}
	f.mu.Unlock()
	if cid == "" || live == nil {
		writeJSON(w, map[string]any{"response": nil, "client": nil})
		return
	}
	var sessions []map[string]any
	last := ""
	for i := range live {
		sj := sessionJSON(&live[i])
		sj["user"] = users[i]
		if tok, err := f.sessionToken(&live[i], live[i].Origin, iss, nil); err == nil {
			sj["last_active_token"] = map[string]any{"object": "token", "jwt": tok}
		}
		if len(live[i].Tasks) > 0 {
			sj["current_task"] = map[string]any{"key": live[i].Tasks[0]}
		}
		sessions = append(sessions, sj)
		last = live[i].ID
	}
	writeJSON(w, map[string]any{"response": map[string]any{
		"object": "client", "id": cid, "sessions": sessions, "last_active_session_id": last,
	}})
}

// ownedSession returns the client's live session sid.
func (f *Fake) ownedSession(cid, sid string) (Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cid == "" || !slices.Contains(f.clients[cid], sid) {
		return Session{}, false
	}
	s := f.refreshLocked(f.sessions[sid])
	if !live(s) {
		return Session{}, false
	}
	return *s, true
}

func signedOut(w http.ResponseWriter) {
	writeAPIError(w, &apiErrorBody{status: http.StatusUnauthorized, Errors: []apiError{{
		Message: "Signed out", LongMessage: "You are signed out", Code: "signed_out",
	}}})
}

// clientToken answers POST /v1/client/sessions/{id}/tokens: a fresh session
// token whose azp is the requesting page's origin.
func (f *Fake) clientToken(w http.ResponseWriter, r *http.Request) {
	s, ok := f.ownedSession(f.clientID(r), r.PathValue("id"))
	if !ok {
		signedOut(w)
		return
	}
	tok, err := f.sessionToken(&s, r.Header.Get("Origin"), f.requestIssuer(r), nil)
	if err != nil {
		writeAPIError(w, notFound("session"))
		return
	}
	writeJSON(w, map[string]any{"object": "token", "jwt": tok})
}

// clientTemplateToken answers POST /v1/client/sessions/{id}/tokens/{template}:
// any signed-in browser can mint any template of the instance, with the
// template's own lifetime and its origin as azp.
func (f *Fake) clientTemplateToken(w http.ResponseWriter, r *http.Request) {
	s, ok := f.ownedSession(f.clientID(r), r.PathValue("id"))
	if !ok {
		signedOut(w)
		return
	}
	tok, apiErr := f.templateToken(s.ID, r.PathValue("template"), 0, r.Header.Get("Origin"), f.requestIssuer(r))
	if apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	writeJSON(w, map[string]any{"object": "token", "jwt": tok})
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in — fake Clerk</title></head>
<body>
{{if .Task}}<h1>Finish signing in</h1>
<p id="task">Task: {{.Task}}</p>
<form method="post" action="/sign-in/tasks">
<input type="hidden" name="redirect_url" value="{{.RedirectURL}}">
<button type="submit">Continue</button>
</form>
{{else}}<h1>Sign in</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/sign-in">
<input type="hidden" name="redirect_url" value="{{.RedirectURL}}">
<label>E-mail <input type="email" name="email" id="email" required></label>
<button type="submit">Sign in</button>
</form>{{end}}
</body></html>`))

type signInData struct {
	Error, RedirectURL, Task string
}

func (f *Fake) checkRedirect(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return "", errors.New("redirect_url must be an absolute URL")
	}
	if !f.originAllowed(u.Scheme + "://" + u.Host) {
		return "", errors.New("redirect_url is not on an allowed origin")
	}
	return u.String(), nil
}

// clientSessionStatus returns the current task of the client's first
// pending session, and whether it has an active one.
func (f *Fake) clientSessionStatus(cid string) (task string, active bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range f.clients[cid] {
		s := f.refreshLocked(f.sessions[id])
		switch {
		case s.Status == StatusPending && len(s.Tasks) > 0 && task == "":
			task = s.Tasks[0]
		case s.Status == StatusActive:
			active = true
		}
	}
	return task, active
}

// synced returns target with __clerk_synced=true, the mark clerk-js on a
// satellite looks for after syncing with the primary domain.
func synced(target string) string {
	u, _ := url.Parse(target)
	q := u.Query()
	q.Set("__clerk_synced", "true")
	u.RawQuery = q.Encode()
	return u.String()
}

// clientSync answers GET /v1/client/sync?redirect_url=…, where clerk-js on a
// production satellite sends a signed-out browser to pick up the primary
// domain's session: back to redirect_url with __clerk_synced=true.
func (f *Fake) clientSync(w http.ResponseWriter, r *http.Request) {
	redirect, err := f.checkRedirect(r.URL.Query().Get("redirect_url"))
	if err != nil {
		writeAPIError(w, &apiErrorBody{status: http.StatusBadRequest, Errors: []apiError{{
			Message: "is invalid", LongMessage: err.Error(), Code: "form_param_value_invalid",
		}}})
		return
	}
	http.Redirect(w, r, synced(redirect), http.StatusSeeOther)
}

// signInPage is the hosted sign-in page: a signed-out browser gets the
// e-mail form, a browser whose session is pending gets its current task, and
// a signed-in browser goes straight back to redirect_url. As the primary
// domain of a development instance, it sends a satellite that came to sync
// (__clerk_satellite_url, clerk-js #redirectToSatellite) straight back with
// __clerk_synced=true.
func (f *Fake) signInPage(w http.ResponseWriter, r *http.Request) {
	if sat := r.URL.Query().Get("__clerk_satellite_url"); sat != "" {
		back, err := f.checkRedirect(sat)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = signInPage.Execute(w, signInData{Error: "__clerk_satellite_url: " + err.Error()})
			return
		}
		http.Redirect(w, r, synced(back), http.StatusSeeOther)
		return
	}
	redirect, err := f.checkRedirect(r.URL.Query().Get("redirect_url"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = signInPage.Execute(w, signInData{Error: err.Error()})
		return
	}
	task, active := f.clientSessionStatus(f.clientID(r))
	if task == "" && active {
		http.Redirect(w, r, redirect, http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = signInPage.Execute(w, signInData{RedirectURL: redirect, Task: task})
}

func (f *Fake) signInSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	redirect, err := f.checkRedirect(r.PostFormValue("redirect_url"))
	email := strings.TrimSpace(r.PostFormValue("email"))
	if err == nil && !strings.Contains(email, "@") {
		err = errors.New("enter an e-mail address")
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = signInPage.Execute(w, signInData{Error: err.Error(), RedirectURL: r.PostFormValue("redirect_url")})
		return
	}
	ru, _ := url.Parse(redirect)
	f.mu.Lock()
	cid := f.clientID(r)
	if cid == "" {
		cid = "client_" + randomID(12)
	}
	u := f.createUserLocked(email)
	s, err := f.signInLocked(u.ID, cid, ru.Scheme+"://"+ru.Host, "")
	f.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusForbidden)
		_ = signInPage.Execute(w, signInData{Error: "This account cannot sign in (banned or locked).", RedirectURL: redirect})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ClientCookie, Value: cid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if s.Status == StatusPending {
		// Tasks come right after authentication, on the sign-in page.
		http.Redirect(w, r, "/sign-in?redirect_url="+url.QueryEscape(redirect), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, redirect, http.StatusSeeOther)
}

// taskSubmit completes the tasks of the browser's pending sessions.
func (f *Fake) taskSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	redirect, err := f.checkRedirect(r.PostFormValue("redirect_url"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = signInPage.Execute(w, signInData{Error: err.Error()})
		return
	}
	cid := f.clientID(r)
	f.mu.Lock()
	for _, id := range f.clients[cid] {
		f.completeTasksLocked(f.sessions[id])
	}
	f.mu.Unlock()
	http.Redirect(w, r, redirect, http.StatusSeeOther)
}
