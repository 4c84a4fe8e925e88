package clilogin

import (
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
		{"an HTML page", "text/html", "<html><body>Sign in to the Wi-Fi</body></html>", "not a JSON token response"},
		{"an HTML page labelled JSON", "application/json", "<html>502</html>", "not a JSON token response"},
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
