package clilogin

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestCustomPages: a CLI's own "success" and "failure" templates are served,
// with the CSP nonce they need; New refuses a set without both.
func TestCustomPages(t *testing.T) {
	pages := template.Must(DefaultPages().Parse(`{{define "success"}}<!doctype html><html lang="en"><style nonce="{{.Nonce}}">p{}</style><p>Welcome aboard, {{.Account}}, from {{.AppName}}</p>{{end}}`))
	for _, tc := range []struct {
		mode, want string
		status     int
	}{
		{"approve", "Welcome aboard, user-1@example.com, from mytool", http.StatusOK},
		{"deny", "Request denied", http.StatusBadRequest}, // "failure" kept from DefaultPages
	} {
		h := newHarness(t)
		h.as.Mode = tc.mode
		h.cfg.Pages = pages
		var final seen
		h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { final = browse(ctx, r.authURL) })
		if final.status != tc.status || !strings.Contains(final.body, tc.want) {
			t.Errorf("%s: browser saw %d:\n%s", tc.mode, final.status, final.body)
		}
		csp := final.header.Get("Content-Security-Policy")
		if i := strings.Index(final.body, `nonce="`); i < 0 || !strings.Contains(csp, "'nonce-"+final.body[i+7:i+7+22]+"'") {
			t.Errorf("the page's nonce is not the CSP's (%s):\n%s", csp, final.body)
		}
	}

	bad := template.Must(template.New("success").Parse(`ok`))
	_, err := New(Config{Issuer: "https://auth.example", ClientID: "c", AppName: "a", Pages: bad})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `"failure"`) {
		t.Errorf("New with no failure template: %v", err)
	}
}

// TestPagesEscape: what the server or the token put in a page is escaped.
func TestPagesEscape(t *testing.T) {
	h := newHarness(t)
	h.as.Mint = func(c jwt.MapClaims) { c["email"] = `<script>alert(1)</script>@example.com` }
	var final seen
	r := h.runLogin(t.Context(), func(ctx context.Context, r *loginResult) { final = browse(ctx, r.authURL) })
	if r.err != nil {
		t.Fatalf("Login: %v", r.err)
	}
	if strings.Contains(final.body, "<script>alert") || !strings.Contains(final.body, "&lt;script&gt;") {
		t.Errorf("unescaped account in the page:\n%s", final.body)
	}
}
