package clerktest_test

import (
	"encoding/json"
	"net/http"
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
