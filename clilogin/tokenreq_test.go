package clilogin

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestParseTokenResponseForms: the token response is read by what the body
// is, not only by what the Content-Type claims: servers in the field send
// JSON labelled text/plain or text/html (x/oauth2 then reads it as a form
// and finds no access_token), and the form encoding under text/plain.
func TestParseTokenResponseForms(t *testing.T) {
	const jsonBody = `{"access_token":"at","token_type":"bearer","refresh_token":"rt","expires_in":"60"}`
	for _, tc := range []struct {
		name, ctype, body string
	}{
		{"JSON", "application/json", jsonBody},
		{"JSON with a charset", "application/json; charset=utf-8", jsonBody},
		{"JSON labelled text/plain", "text/plain", jsonBody},
		{"JSON labelled text/plain with a charset", "text/plain; charset=utf-8", "\n  " + jsonBody},
		{"JSON labelled text/html", "text/html", jsonBody},
		{"JSON labelled a form", "application/x-www-form-urlencoded", jsonBody},
		{"JSON without a Content-Type", "", jsonBody},
		{"form", "application/x-www-form-urlencoded", "access_token=at&token_type=bearer&refresh_token=rt&expires_in=60"},
		{"form labelled text/plain", "text/plain", "access_token=at&token_type=bearer&refresh_token=rt&expires_in=60"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := parseTokenResponse(tc.ctype, []byte(tc.body))
			if err != nil {
				t.Fatalf("parseTokenResponse: %v", err)
			}
			if tr.AccessToken != "at" || tr.RefreshToken != "rt" || tr.TokenType != "bearer" || tr.ExpiresIn != time.Minute {
				t.Errorf("got %+v", *tr)
			}
		})
	}
	for _, tc := range []struct {
		name, ctype, body, says string
	}{
		{"an HTML page", "text/html", "<html><body>Sign in to the Wi-Fi</body></html>", "the body is not JSON"},
		{"an HTML page labelled JSON", "application/json", "<html>502</html>", "the body is not JSON"},
		{"no access token", "application/json", `{"token_type":"Bearer"}`, "no access_token"},
		{"a form without an access token", "text/plain", "error=oops", "no access_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTokenResponse(tc.ctype, []byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v; want one saying %q", err, tc.says)
			}
		})
	}
}

// TestInvalidTokenResponseMessage: an answer that is not a token response
// (a proxy's HTML page with 200) is one sentence naming the endpoint, at
// login and in the refresh warning, without "Refresh failed: invalid
// response" chains.
func TestInvalidTokenResponseMessage(t *testing.T) {
	h := newHarness(t)
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	h.login()
	orig := h.as.srv.Config.Handler
	h.as.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			orig.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><body>Sign in to the Wi-Fi</body></html>")
	})
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || len(hooked) != 1 {
		t.Fatalf("Token: %v, hooked %v; want the old token and one report", err, hooked)
	}
	h.clock.Add(2 * time.Hour)
	_, err := h.client().Token(t.Context())
	for _, e := range []error{hooked[0], err} {
		msg := Message(e)
		if !errors.Is(e, ErrInvalidResponse) || !strings.Contains(msg, "The token endpoint "+h.as.Issuer+"/token sent an answer that is not a token response") ||
			strings.Contains(msg, "efresh failed") || strings.Contains(msg, "nvalid response") {
			t.Errorf("message %q (%v)", msg, e)
		}
	}
}

// TestRefreshFailedSaysItOnce: the message for an expired token whose
// refresh got no answer says what happened, where, and what to do, once.
func TestRefreshFailedSaysItOnce(t *testing.T) {
	for _, down := range []string{"refused", "no answer"} {
		t.Run(down, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.HTTPClient = &http.Client{Timeout: time.Second}
			h.login()
			if down == "refused" {
				h.as.Close()
			} else {
				hang := make(chan struct{})
				t.Cleanup(func() { close(hang) }) // before the server's Close, which waits for handlers
				h.as.srv.Config.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang })
			}
			h.clock.Add(2 * time.Hour)
			_, err := h.client().Token(t.Context())
			msg := Message(err)
			if !errors.Is(err, ErrServerUnreachable) || !strings.Contains(msg, h.as.Issuer+"/token") ||
				!strings.Contains(msg, "Your login is kept") || strings.Count(msg, "try again") > 1 {
				t.Errorf("message %q (%v)", msg, err)
			}
		})
	}
}

// TestRefreshReportsOnePrefix: what OnRefreshError gets reads as one error
// for developers ("clilogin: refresh failed: the token endpoint …"), not a
// chain repeating the package prefix, and as one sentence for people.
func TestRefreshReportsOnePrefix(t *testing.T) {
	h := newHarness(t)
	var hooked []error
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	h.login()
	h.as.Close()
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || len(hooked) != 1 {
		t.Fatalf("Token: %v, hooked %v", err, hooked)
	}
	err := hooked[0]
	if !errors.Is(err, ErrRefreshFailed) || !errors.Is(err, ErrServerUnreachable) || strings.Count(err.Error(), "clilogin:") != 1 ||
		!strings.HasPrefix(Message(err), "Cannot reach the token endpoint") {
		t.Errorf("reported %q / %q", err.Error(), Message(err))
	}

	// A refresh whose answer could not be stored.
	h = newHarness(t)
	hooked = nil
	h.cfg.OnRefreshError = func(err error) { hooked = append(hooked, err) }
	h.login()
	h.cfg.Store = &failingSaves{Store: h.cfg.Store}
	h.clock.Add(50 * time.Minute)
	if _, err := h.client().Token(t.Context()); err != nil || len(hooked) != 1 {
		t.Fatalf("Token: %v, hooked %v", err, hooked)
	}
	err = hooked[0]
	if !errors.Is(err, ErrNotSaved) || !errors.Is(err, ErrStorage) || strings.Count(err.Error(), "clilogin:") != 1 ||
		!strings.Contains(Message(err), "the next run may need `mytool login`") {
		t.Errorf("reported %q / %q", err.Error(), Message(err))
	}
}
