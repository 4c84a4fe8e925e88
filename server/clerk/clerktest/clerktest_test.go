package clerktest_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

type errorBody struct {
	Errors []struct {
		Message     string `json:"message"`
		LongMessage string `json:"long_message"`
		Code        string `json:"code"`
	} `json:"errors"`
	ClerkTraceID string `json:"clerk_trace_id"`
}

// The Backend API answers errors with Clerk's status codes and body shape.
func TestBackendAPIErrors(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{})
	u := f.CreateUser("a@example.com")
	s, err := f.SignIn(u.ID, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		code                          string
	}{
		{"no key", "GET", "/v1/jwks", "", "", 401, "authentication_invalid"},
		{"wrong key", "GET", "/v1/sessions/" + s.ID, "sk_test_wrong", "", 401, "authentication_invalid"},
		{"unknown session", "GET", "/v1/sessions/sess_nope", f.SecretKey, "", 404, "resource_not_found"},
		{"unknown user", "GET", "/v1/users/user_nope", f.SecretKey, "", 404, "resource_not_found"},
		{"unknown template", "POST", "/v1/sessions/" + s.ID + "/tokens/nope", f.SecretKey, "{}", 404, "resource_not_found"},
		{"lifetime too short", "POST", "/v1/sessions/" + s.ID + "/tokens/cli", f.SecretKey, `{"expires_in_seconds":29}`, 422, "form_param_value_invalid"},
		{"lifetime too long", "POST", "/v1/sessions/" + s.ID + "/tokens/cli", f.SecretKey, `{"expires_in_seconds":315360001}`, 422, "form_param_value_invalid"},
		{"bad body", "POST", "/v1/sessions/" + s.ID + "/tokens/cli", f.SecretKey, `{`, 400, "request_body_invalid"},
	} {
		req, _ := http.NewRequest(tc.method, f.URL+tc.path, strings.NewReader(tc.body))
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b errorBody
		_ = json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if resp.StatusCode != tc.status || len(b.Errors) != 1 || b.Errors[0].Code != tc.code || b.Errors[0].LongMessage == "" ||
			b.ClerkTraceID == "" || resp.Header.Get("Clerk-Trace-Id") != b.ClerkTraceID {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, resp.StatusCode, b, tc.status, tc.code)
		}
	}
}

// The sign-in page only returns to allowed origins, and the Frontend API
// answers credentialed CORS only for them.
func TestFrontendAPIOrigins(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{AllowedOrigins: []string{"http://127.0.0.1:8787"}})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for target, want := range map[string]int{
		"http://127.0.0.1:8787/oauth/signin?req=1": http.StatusSeeOther,
		"http://evil.example/steal":                http.StatusBadRequest,
		"/relative":                                http.StatusBadRequest,
	} {
		resp, err := noRedirect.PostForm(f.URL+"/sign-in", url.Values{"email": {"a@example.com"}, "redirect_url": {target}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("sign-in returning to %s: %d, want %d", target, resp.StatusCode, want)
		}
		if want == http.StatusSeeOther && (resp.Header.Get("Location") != target || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != clerktest.ClientCookie) {
			t.Errorf("sign-in: Location %q, cookies %v", resp.Header.Get("Location"), resp.Cookies())
		}
	}
	for origin, want := range map[string]int{"http://127.0.0.1:8787": 200, "http://127.0.0.1:9999": 403} {
		req, _ := http.NewRequest("GET", f.URL+"/v1/client", nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && resp.Header.Get("Access-Control-Allow-Origin") != origin) {
			t.Errorf("GET /v1/client from %s: %d %v", origin, resp.StatusCode, resp.Header)
		}
	}
}

// The fake's methods are safe for concurrent use: minting tokens while a
// session ends races on nothing (run with -race).
func TestConcurrentTokensAndSessionChanges(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{})
	u := f.CreateUser("a@example.com")
	s, err := f.SignIn(u.ID, "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 20 {
			_, _ = f.SessionToken(s.ID, "http://127.0.0.1:1", nil)
			_, _ = f.TemplateToken(s.ID, "cli", time.Minute)
		}
	}()
	go func() {
		defer wg.Done()
		for range 2000 {
			_ = f.RevokeSession(s.ID)
			_ = f.EndSession(s.ID)
		}
	}()
	wg.Wait()
	if got, _ := f.Session(s.ID); got.Status != clerktest.StatusEnded {
		t.Fatalf("status %q", got.Status)
	}
}

func decode(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// Token kinds as Clerk mints them: categories (or the ignore category on
// every token), azp only on Frontend API tokens, no sid in template tokens,
// "mch_" machines, at+jwt OAuth tokens.
func TestTokenKinds(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		f := clerktest.New(t, clerktest.Options{IgnoreCategory: ignore})
		u := f.CreateUser("a@example.com")
		s, _ := f.SignIn(u.ID, "http://127.0.0.1:1")
		cat := func(c string) string {
			if ignore {
				return clerktest.IgnoreTokenCategory
			}
			return c
		}
		mint := map[string]func() (string, error){
			"session":          func() (string, error) { return f.SessionToken(s.ID, "http://127.0.0.1:1", nil) },
			"backend template": func() (string, error) { return f.TemplateToken(s.ID, "cli", time.Hour) },
			"browser template": func() (string, error) { return f.FrontendTemplateToken(s.ID, "cli", "http://127.0.0.1:1") },
			"m2m":              func() (string, error) { return f.MachineToken("mch_1") },
			"oauth":            func() (string, error) { return f.OAuthAccessToken(s.ID, "app") },
		}
		toks := map[string][2]map[string]any{}
		for k, m := range mint {
			tok, err := m()
			if err != nil {
				t.Fatal(err)
			}
			h, c := decode(t, tok)
			toks[k] = [2]map[string]any{h, c}
		}
		check := func(kind string, ok bool, what string) {
			t.Helper()
			if !ok {
				t.Errorf("ignore=%v %s: %s; header %v claims %v", ignore, kind, what, toks[kind][0], toks[kind][1])
			}
		}
		h, c := toks["session"][0], toks["session"][1]
		check("session", h["cat"] == cat(clerktest.SessionTokenCategory) && c["sid"] == s.ID && c["azp"] == "http://127.0.0.1:1" && c["sts"] == "active", "session token claims")
		h, c = toks["backend template"][0], toks["backend template"][1]
		_, hasAzp := c["azp"]
		_, hasSid := c["sid"]
		check("backend template", h["cat"] == cat(clerktest.TemplateTokenCategory) && !hasAzp && !hasSid && c[clerktest.TemplateMarker] == "cli", "Backend API template token")
		h, c = toks["browser template"][0], toks["browser template"][1]
		check("browser template", h["cat"] == cat(clerktest.TemplateTokenCategory) && c["azp"] == "http://127.0.0.1:1" && c["exp"].(float64)-c["iat"].(float64) == 60, "Frontend API template token (azp, 60 s)")
		h, c = toks["m2m"][0], toks["m2m"][1]
		check("m2m", h["cat"] == cat(clerktest.M2MTokenCategory) && c["sub"] == "mch_1", "M2M token")
		h = toks["oauth"][0]
		check("oauth", h["typ"] == "at+jwt", "OAuth token typ")
	}
}

// Behind a proxy, the Frontend API answers only requests that come through
// it, and tokens are issued by the proxy URL.
func TestProxy(t *testing.T) {
	dev := clerktest.New(t, clerktest.Options{})
	if err := dev.SetProxyURL("http://127.0.0.1:1/__clerk"); err == nil {
		t.Errorf("SetProxyURL on a development instance succeeded")
	}
	f := clerktest.New(t, clerktest.Options{Production: true})
	if !strings.HasPrefix(f.PublishableKey, "pk_live_") || !strings.HasPrefix(f.SecretKey, "sk_live_") {
		t.Fatalf("production keys: %s %s", f.PublishableKey, f.SecretKey)
	}
	app := httptest.NewUnstartedServer(nil)
	proxyURL := "http://" + app.Listener.Addr().String() + "/__clerk"
	mux := http.NewServeMux()
	mux.Handle("/__clerk/", f.ProxyHandler(proxyURL))
	app.Config.Handler = mux
	app.Start()
	t.Cleanup(app.Close)
	if err := f.SetProxyURL(proxyURL); err != nil {
		t.Fatal(err)
	}
	get := func(u string) int {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(f.URL + "/.well-known/jwks.json"); code != http.StatusBadRequest {
		t.Errorf("JWKS straight from the Frontend API: %d, want 400", code)
	}
	if code := get(proxyURL + "/.well-known/jwks.json"); code != http.StatusOK {
		t.Errorf("JWKS through the proxy: %d", code)
	}
	if code := get(proxyURL + clerktest.ClerkJSPath); code != http.StatusOK {
		t.Errorf("clerk-js through the proxy: %d", code)
	}
	u := f.CreateUser("a@example.com")
	s, _ := f.SignIn(u.ID, "http://127.0.0.1:1")
	tok, _ := f.TemplateToken(s.ID, "cli", time.Hour)
	if _, c := decode(t, tok); c["iss"] != proxyURL || f.Issuer() != proxyURL {
		t.Errorf("iss = %v, want the proxy URL", c["iss"])
	}
}

// Pending sessions are live for clerk-js (in GET /v1/client, with their
// task) and get session tokens with sts "pending", but no template tokens;
// the sign-in page shows the task and completes it.
func TestPendingSession(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{SessionTasks: []string{clerktest.TaskChooseOrganization}})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	back := "http://127.0.0.1:8787/oauth/signin?req=1"
	resp, err := c.PostForm(f.URL+"/sign-in", url.Values{"email": {"a@example.com"}, "redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	if !strings.Contains(page, "Task: "+clerktest.TaskChooseOrganization) {
		t.Fatalf("no task after sign-in:\n%s", page)
	}
	u, _ := f.UserByEmail("a@example.com")
	s := f.Sessions(u.ID)[0]
	if s.Status != clerktest.StatusPending {
		t.Fatalf("status %q", s.Status)
	}
	resp, err = c.Get(f.URL + "/v1/client")
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		Response struct {
			Sessions []struct {
				Status          string               `json:"status"`
				CurrentTask     struct{ Key string } `json:"current_task"`
				LastActiveToken struct{ JWT string } `json:"last_active_token"`
			} `json:"sessions"`
		} `json:"response"`
	}
	_ = json.Unmarshal([]byte(readAll(t, resp)), &client)
	if ss := client.Response.Sessions; len(ss) != 1 || ss[0].Status != "pending" || ss[0].CurrentTask.Key != clerktest.TaskChooseOrganization || ss[0].LastActiveToken.JWT == "" {
		t.Fatalf("client = %+v", client)
	}
	if _, err := f.TemplateToken(s.ID, "cli", time.Hour); err == nil {
		t.Errorf("template token for a pending session")
	}
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = noFollow.PostForm(f.URL+"/sign-in/tasks", url.Values{"redirect_url": {back}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _ := f.Session(s.ID); resp.Header.Get("Location") != back || got.Status != clerktest.StatusActive {
		t.Errorf("after the task: Location %q, status %q", resp.Header.Get("Location"), got.Status)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// GET /v1/jwt_templates pages like the Backend API, with the fields the
// Dashboard shows.
func TestListTemplates(t *testing.T) {
	ts := map[string]clerktest.Template{}
	for i := range 12 {
		ts[fmt.Sprintf("t%02d", i)] = clerktest.Template{Claims: map[string]any{"n": i}, CustomSigningKey: i == 11, Lifetime: time.Hour}
	}
	f := clerktest.New(t, clerktest.Options{Templates: ts})
	list := func(q string) (names []string, total int, custom bool) {
		req, _ := http.NewRequest("GET", f.APIURL+"/jwt_templates?paginated=true"+q, nil)
		req.Header.Set("Authorization", "Bearer "+f.SecretKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Data []struct {
				Name             string `json:"name"`
				Lifetime         int    `json:"lifetime"`
				CustomSigningKey bool   `json:"custom_signing_key"`
			} `json:"data"`
			TotalCount int `json:"total_count"`
		}
		_ = json.Unmarshal([]byte(readAll(t, resp)), &body)
		for _, d := range body.Data {
			names = append(names, d.Name)
			custom = custom || d.CustomSigningKey
			if d.Lifetime != 3600 {
				t.Errorf("lifetime %d", d.Lifetime)
			}
		}
		return names, body.TotalCount, custom
	}
	if names, total, _ := list(""); len(names) != 10 || total != 12 {
		t.Errorf("default page: %v of %d", names, total)
	}
	if names, _, custom := list("&limit=5&offset=10"); len(names) != 2 || names[1] != "t11" || !custom {
		t.Errorf("last page: %v custom=%v", names, custom)
	}
}

// Banned and locked users cannot sign in; a ban revokes their sessions, a
// lock does not; both show in the user object webhooks carry.
func TestBanAndLock(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{})
	banned, locked := f.CreateUser("b@example.com"), f.CreateUser("l@example.com")
	sb, _ := f.SignIn(banned.ID, "http://127.0.0.1:1")
	sl, _ := f.SignIn(locked.ID, "http://127.0.0.1:1")
	_ = f.BanUser(banned.ID)
	_ = f.LockUser(locked.ID)
	if s, _ := f.Session(sb.ID); s.Status != clerktest.StatusRevoked {
		t.Errorf("banned user's session: %q", s.Status)
	}
	if s, _ := f.Session(sl.ID); s.Status != clerktest.StatusActive {
		t.Errorf("locked user's session: %q", s.Status)
	}
	for _, u := range []clerktest.User{banned, locked} {
		if _, err := f.SignIn(u.ID, "http://127.0.0.1:1"); err == nil {
			t.Errorf("%s signed in", u.Email)
		}
	}
	if d := f.UserData(banned.ID); d["banned"] != true || d["locked"] != false {
		t.Errorf("banned user data %v", d)
	}
	if d := f.UserData(locked.ID); d["locked"] != true {
		t.Errorf("locked user data %v", d)
	}
}

// A satellite syncs with the primary domain: the production Frontend API's
// /v1/client/sync and, on a development instance, the primary's sign-in page
// with __clerk_satellite_url send the browser back with __clerk_synced=true,
// to allowed origins only.
func TestSatelliteSync(t *testing.T) {
	f := clerktest.New(t, clerktest.Options{AllowedOrigins: []string{"http://127.0.0.1:8787"}})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/v1/client/sync?redirect_url=", "/sign-in?__clerk_satellite_url="} {
		for target, want := range map[string]string{
			"http://127.0.0.1:8787/oauth/signin?req=1": "http://127.0.0.1:8787/oauth/signin?__clerk_synced=true&req=1",
			"http://evil.example/steal":                "",
		} {
			resp, err := noRedirect.Get(f.URL + path + url.QueryEscape(target))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); (want == "" && resp.StatusCode != http.StatusBadRequest) || (want != "" && loc != want) {
				t.Errorf("%s%s: %d, Location %q; want %q", path, target, resp.StatusCode, loc, want)
			}
		}
	}
	if r := f.Requests(); len(r) != 4 || r[0] != "GET /v1/client/sync?redirect_url" || r[3] != "GET /sign-in?__clerk_satellite_url" {
		t.Errorf("Requests() = %v", r)
	}
}
