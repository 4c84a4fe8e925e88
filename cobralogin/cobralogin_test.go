package cobralogin

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/tokenstore"
)

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{42 * time.Second, "42 seconds"},
		{time.Second, "1 second"},
		{5 * time.Minute, "5 minutes"},
		{time.Hour, "1 hour"},
		{2*time.Hour + 3*time.Minute, "2 hours 3 minutes"},
		{7 * 24 * time.Hour, "7 days"},
		{6*24*time.Hour + 23*time.Hour + 59*time.Minute, "6 days 23 hours"},
		{-90 * time.Second, "1 minute"},
	} {
		if got := Human(tc.d); got != tc.want {
			t.Errorf("Human(%v) = %q; want %q", tc.d, got, tc.want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := &clilogin.Session{Subject: "user_1", Account: "ada@example.com", Issuer: "http://127.0.0.1:8787",
		Expiry: now.Add(49 * time.Hour), Location: tokenstore.Location{Kind: tokenstore.KindFile, Path: "/home/ada/.config/mytool/x.json"}}
	var b bytes.Buffer
	WriteStatus(&b, s, "work", now, "mytool login --profile work")
	out := b.String()
	for _, want := range []string{"127.0.0.1:8787\n", "Logged in to http://127.0.0.1:8787 account ada@example.com (file: /home/ada/.config/mytool/x.json)",
		"Profile: work", "expires in 2 days 1 hour", "plain file"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	s.Expiry, s.CanRefresh, s.Location = now.Add(-time.Hour), false, tokenstore.Location{Kind: tokenstore.KindKeychain}
	b.Reset()
	WriteStatus(&b, s, "", now, "mytool login")
	if out := b.String(); !strings.Contains(out, "X Token expired 1 hour ago and cannot be refreshed: run `mytool login`") || strings.Contains(out, "Profile") {
		t.Errorf("expired status:\n%s", out)
	}
}

func TestFlagsAndEnvOverrideTheDefaults(t *testing.T) {
	root := &cobra.Command{Use: "mytool"}
	cmds := Add(root, Config{Login: clilogin.Config{Issuer: "http://default", ClientID: "mytool", AppName: "my-tool"}})
	if got := cmds.ClientConfig(); got.Issuer != "http://default" || got.Profile != "" {
		t.Fatalf("defaults: issuer %q profile %q", got.Issuer, got.Profile)
	}
	t.Setenv("MY_TOOL_SERVER", "http://from-env/")
	t.Setenv("MY_TOOL_PROFILE", "env-profile")
	if got := cmds.ClientConfig(); got.Issuer != "http://from-env" || got.Profile != "env-profile" {
		t.Fatalf("env: issuer %q profile %q", got.Issuer, got.Profile)
	}
	if err := root.PersistentFlags().Parse([]string{"--server", "http://from-flag", "--profile", "flag-profile"}); err != nil {
		t.Fatal(err)
	}
	if got := cmds.ClientConfig(); got.Issuer != "http://from-flag" || got.Profile != "flag-profile" {
		t.Fatalf("flags: issuer %q profile %q", got.Issuer, got.Profile)
	}
	for _, name := range []string{"login", "logout", "status", "token"} {
		if c, _, err := root.Find([]string{name}); err != nil || c.Name() != name {
			t.Errorf("command %q not added", name)
		}
	}
}

func TestExecuteExitCodes(t *testing.T) {
	var errOut bytes.Buffer
	root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error { return errors.New("boom") }}
	root.SetErr(&errOut)
	root.SetArgs(nil)
	if code := Execute(root); code != 1 || errOut.String() != "Boom.\n" {
		t.Errorf("Execute = %d, stderr %q; want 1 and the error as a sentence", code, errOut.String())
	}
	root.RunE = func(*cobra.Command, []string) error {
		return fmt.Errorf("%w: %w", clilogin.ErrStorage, errors.New("tokenstore: keychain load \"k\": keychain unavailable"))
	}
	errOut.Reset()
	if code := Execute(root); code != ExitUnknown || strings.Contains(errOut.String(), "tokenstore:") {
		t.Errorf("Execute with a store failure = %d, stderr %q; want %d and no package prefixes", code, errOut.String(), ExitUnknown)
	}
	root.RunE = func(*cobra.Command, []string) error { return silent{errors.New("shown")} }
	errOut.Reset()
	if code := Execute(root); code != 1 || errOut.Len() != 0 {
		t.Errorf("Execute = %d, stderr %q; want 1 and nothing printed twice", code, errOut.String())
	}
	root.RunE = func(*cobra.Command, []string) error { return nil }
	if code := Execute(root); code != 0 {
		t.Errorf("Execute = %d; want 0", code)
	}
}

func TestWriteStatusHints(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	env := tokenstore.Location{Kind: tokenstore.KindEnv}
	for _, tc := range []struct {
		name string
		s    *clilogin.Session
		want []string
	}{
		{"env, expired", &clilogin.Session{Subject: "u", Issuer: "https://api.example", Expiry: now.Add(-2 * time.Hour), Location: env},
			[]string{"X Logged in", "(env)", "X Token expired 2 hours ago: set a fresh token in the environment variable, or unset it and run `mytool login`"}},
		{"env, opaque", &clilogin.Session{Issuer: "https://api.example", Location: env},
			[]string{"account (unknown) (env)", "Token expiry: unknown", "! The token from the environment is not a JWT"}},
		{"refreshable", &clilogin.Session{Subject: "u", Issuer: "https://api.example", Expiry: now.Add(-time.Minute), CanRefresh: true,
			Location: tokenstore.Location{Kind: tokenstore.KindKeychain}}, []string{"(keychain)", "- Token expired 1 minute ago; it will be refreshed on next use"}},
	} {
		var b bytes.Buffer
		WriteStatus(&b, tc.s, "", now, "mytool login")
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
	}
}

// run runs the CLI with args and returns stdout, stderr and the exit code.
func run(root *cobra.Command, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code := Execute(root)
	return out.String(), errOut.String(), code
}

func TestStatusFromEnv(t *testing.T) {
	root := &cobra.Command{Use: "mytool"}
	Add(root, Config{Login: clilogin.Config{Issuer: "https://api.example", ClientID: "mytool", AppName: "mytool", TokenEnv: "MYTOOL_TOKEN"}})
	// An unsigned JWT is enough: status decodes it for display only.
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"user_1","email":"ada@example.com","exp":4102444800}`))
	t.Setenv("MYTOOL_TOKEN", "eyJhbGciOiJub25lIn0."+claims+".")
	out, errOut, code := run(root, "status")
	if code != 0 || !strings.Contains(out, "account ada@example.com (env)") || !strings.Contains(out, "The token comes from $MYTOOL_TOKEN") {
		t.Errorf("status exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestLoginFlags(t *testing.T) {
	t.Run("--no-browser", func(t *testing.T) {
		root := &cobra.Command{Use: "mytool"}
		var got clilogin.Config
		Add(root, Config{Login: clilogin.Config{Issuer: "https://api.example", ClientID: "mytool", AppName: "mytool"},
			NewClient: func(cfg clilogin.Config) (*clilogin.Client, error) { got = cfg; return nil, errors.New("stop here") }})
		if _, errOut, code := run(root, "login", "--no-browser"); code != 1 || !got.NoBrowser || !strings.Contains(errOut, "Stop here.") {
			t.Errorf("exit %d, NoBrowser %v, stderr %q", code, got.NoBrowser, errOut)
		}
	})
	t.Run("--device", func(t *testing.T) {
		root := &cobra.Command{Use: "mytool"}
		var got clilogin.Config
		Add(root, Config{Login: clilogin.Config{Issuer: "https://api.example", ClientID: "mytool", AppName: "mytool"},
			NewClient: func(cfg clilogin.Config) (*clilogin.Client, error) { got = cfg; return nil, errors.New("stop here") }})
		if _, errOut, code := run(root, "login", "--device"); code != 1 || got.Device != clilogin.DeviceAlways || got.NoBrowser {
			t.Errorf("exit %d, Device %v, NoBrowser %v, stderr %q", code, got.Device, got.NoBrowser, errOut)
		}
		got = clilogin.Config{}
		_, errOut, code := run(root, "login", "--device", "--no-browser")
		if code != 1 || got.ClientID != "" || !strings.Contains(errOut, "--device and --no-browser do not go together") {
			t.Errorf("--device --no-browser: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("a server that does not answer is named, not a login timeout", func(t *testing.T) {
		// A socket that accepts and never replies.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		defer srv.Close()
		for _, tc := range []struct {
			name    string
			timeout string
			hc      *http.Client
			waited  string
		}{
			{"HTTP client's timeout first", "2m", &http.Client{Timeout: 300 * time.Millisecond}, "within 300ms"},
			{"login's --timeout first", "200ms", nil, "within "},
		} {
			t.Run(tc.name, func(t *testing.T) {
				root := &cobra.Command{Use: "mytool"}
				Add(root, Config{Login: clilogin.Config{Issuer: srv.URL, ClientID: "mytool", AppName: "mytool",
					Store: tokenstore.NewMemory(), HTTPClient: tc.hc}})
				_, errOut, code := run(root, "login", "--timeout", tc.timeout)
				want := "The metadata endpoint " + srv.URL + "/.well-known/oauth-authorization-server did not answer " + tc.waited
				if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "timed out") || strings.Contains(errOut, "No sign-in") {
					t.Errorf("exit %d, stderr %q; want %q", code, errOut, want)
				}
			})
		}
	})
	t.Run("no sign-in in time says what to do", func(t *testing.T) {
		as := newMetadataServer(t)
		root := &cobra.Command{Use: "mytool"}
		Add(root, Config{Login: clilogin.Config{Issuer: as.URL, ClientID: "mytool", AppName: "mytool", Store: tokenstore.NewMemory(),
			OpenBrowser: func(context.Context, string) error { return nil }}})
		_, errOut, code := run(root, "--server", as.URL, "login", "--timeout", "300ms")
		if code != 1 || !strings.Contains(errOut, "No sign-in arrived within 300ms (--timeout). Run `mytool login --server "+as.URL+"` again") ||
			!strings.Contains(errOut, "--no-browser") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

// TestBadServerURL: a --server (or $MYTOOL_SERVER) value that is not a
// usable URL is the user's input: the message names it and where it came
// from, without "Invalid config: Issuer".
func TestBadServerURL(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--server", "ftp://x", "status"}, "", "The server ftp://x (--server) cannot be used. It must use https (plain http only for loopback hosts)."},
		{[]string{"--server", "http://api.example.com", "login"}, "", "The server http://api.example.com (--server) cannot be used. It must use https"},
		{[]string{"status"}, "https://api.example.com/?x=1", "The server 'https://api.example.com/?x=1' (MYTOOL_SERVER) cannot be used. It must not have a query or fragment."},
		{[]string{"token"}, "http://[::1", "The server 'http://[::1' (MYTOOL_SERVER) cannot be used. It is not an absolute URL."},
	} {
		t.Setenv("MYTOOL_SERVER", tc.env)
		root := &cobra.Command{Use: "mytool"}
		Add(root, Config{Login: clilogin.Config{Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool",
			Store: tokenstore.NewMemory()}})
		_, errOut, code := run(root, tc.args...)
		if code != ExitFailure || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "Issuer") || strings.Contains(errOut, "nvalid config") {
			t.Errorf("%v: exit %d:\n%s", tc.args, code, errOut)
		}
	}
}

// ServerURL resolves a path on the selected server and refuses anything
// that would send the request elsewhere.
func TestServerURL(t *testing.T) {
	for _, tc := range []struct {
		server, path, want string
	}{
		{"", "/api/me", "https://api.example.com/api/me"},
		{"", "/api/items?limit=10", "https://api.example.com/api/items?limit=10"},
		{"http://127.0.0.1:9999/", "/api/me", "http://127.0.0.1:9999/api/me"},
		{"https://auth.example.com/tenant", "/api/me", "https://auth.example.com/api/me"},
		{"", "https://evil.example/api/me", ""},
		{"", "//evil.example/api/me", ""},
		{"", "http:/x", ""},
	} {
		root := &cobra.Command{Use: "mytool"}
		cmds := Add(root, Config{Login: clilogin.Config{Issuer: "https://api.example.com", ClientID: "mytool", AppName: "mytool"}})
		var got string
		var gotErr error
		root.AddCommand(&cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error {
			got, gotErr = cmds.ServerURL(tc.path)
			return nil
		}})
		args := []string{"x"}
		if tc.server != "" {
			args = []string{"--server", tc.server, "x"}
		}
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if got != tc.want || (tc.want == "") != (gotErr != nil) {
			t.Errorf("--server %q, ServerURL(%q) = %q, %v; want %q", tc.server, tc.path, got, gotErr, tc.want)
		}
	}
}
