package cobralogin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/tokenstore"
)

// newMetadataServer serves RFC 8414 metadata and nothing else useful: a
// login against it waits for a callback that never comes.
func newMetadataServer(t *testing.T) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
			"jwks_uri": srv.URL + "/jwks", "code_challenge_methods_supported": []string{"S256"},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

const testIssuer = "https://api.example"

// storeWith returns a memory store holding rec as the default profile's
// login for testIssuer (nothing when rec is nil).
func storeWith(t *testing.T, rec *tokenstore.Record) *tokenstore.Memory {
	t.Helper()
	st := tokenstore.NewMemory()
	if rec != nil {
		b, err := tokenstore.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Save(t.Context(), tokenstore.Key("", testIssuer, "mytool"), b); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// brokenStore fails like a keychain that cannot be reached.
type brokenStore struct{ tokenstore.Store }

var errUnreachable = &tokenstore.KeychainError{Where: "the Secret Service on the D-Bus session bus at unix:path=/nonexistent",
	Reason: "cannot connect to the D-Bus session bus", Err: errors.New("dial unix /nonexistent: no such file or directory")}

func (brokenStore) Load(context.Context, string) ([]byte, error) { return nil, errUnreachable }
func (brokenStore) Save(context.Context, string, []byte) error   { return errUnreachable }
func (brokenStore) Delete(context.Context, string) error         { return errUnreachable }

// TestStatusExitCodes: status exits 0 only with a usable login, 1 when not
// logged in or a new login is needed, 2 when the store cannot tell; and
// says which, in words.
func TestStatusExitCodes(t *testing.T) {
	now := time.Now()
	base := tokenstore.Record{AccessToken: "a", Issuer: testIssuer, ClientID: "mytool", TokenEndpoint: testIssuer + "/token",
		Subject: "u1", Account: "ada@example.com", IssuedAt: now.Add(-time.Hour)}
	with := func(f func(r *tokenstore.Record)) *tokenstore.Record { r := base; f(&r); return &r }
	jwt := func(exp time.Time) string {
		c, _ := json.Marshal(map[string]any{"sub": "u1", "email": "ada@example.com", "exp": exp.Unix()})
		return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(c) + "."
	}
	for _, tc := range []struct {
		name  string
		store tokenstore.Store
		env   string
		code  int
		want  []string
	}{
		{"logged in", storeWith(t, with(func(r *tokenstore.Record) { r.Expiry = now.Add(time.Hour) })), "", 0,
			[]string{"✓ Logged in to https://api.example account ada@example.com", "Token expires in"}},
		{"expired, refreshable", storeWith(t, with(func(r *tokenstore.Record) { r.Expiry = now.Add(-time.Minute); r.RefreshToken = "r" })), "", 0,
			[]string{"✓ Logged in", "it will be refreshed on next use"}},
		{"expired, not refreshable", storeWith(t, with(func(r *tokenstore.Record) { r.Expiry = now.Add(-time.Minute) })), "", 1,
			[]string{"X Logged in", "X Token expired 1 minute ago and cannot be refreshed: run `mytool login`"}},
		{"revoked", storeWith(t, with(func(r *tokenstore.Record) {
			r.AccessToken, r.Ended = "", &tokenstore.Ended{At: now, Reason: "revoked"}
		})), "", 1, []string{"X The login of ada@example.com to https://api.example has ended: the server revoked it.", "Run `mytool login` to sign in again."}},
		{"reused", storeWith(t, with(func(r *tokenstore.Record) {
			r.AccessToken, r.Ended = "", &tokenstore.Ended{At: now, Reason: "reused"}
		})), "", 1, []string{"has ended: its refresh token was used twice"}},
		{"expired at the server", storeWith(t, with(func(r *tokenstore.Record) {
			r.AccessToken, r.Ended = "", &tokenstore.Ended{At: now, Reason: "expired"}
		})), "", 1, []string{"has ended: it reached the server's maximum login lifetime."}},
		{"not logged in", storeWith(t, nil), "", 1, []string{"X Not logged in to https://api.example", "Run `mytool login` to sign in."}},
		{"storage unreachable", brokenStore{}, "", 2,
			[]string{"? Cannot tell whether you are logged in: the Secret Service on the D-Bus session bus at unix:path=/nonexistent is unreachable"}},
		{"env token", brokenStore{}, jwt(now.Add(time.Hour)), 0, []string{"✓ Logged in", "(env)", "The token comes from $MYTOOL_TOKEN"}},
		{"env token with a newline", brokenStore{}, jwt(now.Add(time.Hour)) + "\n", 0, []string{"✓ Logged in", "ada@example.com (env)"}},
		{"env token expired", brokenStore{}, jwt(now.Add(-time.Hour)), 1, []string{"X Token expired 1 hour ago: set a fresh token"}},
		{"env token only spaces", storeWith(t, nil), "   ", 1, []string{"X Not logged in"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MYTOOL_TOKEN", tc.env)
			root := &cobra.Command{Use: "mytool"}
			Add(root, Config{Login: clilogin.Config{Issuer: testIssuer, ClientID: "mytool", AppName: "mytool",
				TokenEnv: "MYTOOL_TOKEN", Store: tc.store}})
			out, errOut, code := run(root, "status")
			if code != tc.code {
				t.Errorf("exit %d; want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out+errOut, "clilogin:") || strings.Contains(out+errOut, "tokenstore:") {
				t.Errorf("package prefixes reach the user:\n%s%s", out, errOut)
			}
		})
	}
}

// TestHintsCarryServer: the command a message tells the user to run keeps
// the --server (and --profile) they gave, in the form they gave it, so
// following it signs in to the same server. Messages are
// sentences without package prefixes.
func TestHintsCarryServer(t *testing.T) {
	const server = "http://127.0.0.1:9999"
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"default server", nil, nil, "Run `mytool login` to sign in."},
		{"flag", nil, []string{"--server", server}, "Run `mytool login --server " + server + "` to sign in."},
		{"flags with profile", nil, []string{"--server", server, "--profile", "my work"},
			"Run `mytool login --server " + server + " --profile 'my work'` to sign in."},
		{"env", map[string]string{"MYTOOL_SERVER": server}, nil, "Run `MYTOOL_SERVER=" + server + " mytool login` to sign in."},
		{"env profile, flag server", map[string]string{"MYTOOL_PROFILE": "work"}, []string{"--server", server},
			"Run `MYTOOL_PROFILE=work mytool login --server " + server + "` to sign in."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MYTOOL_SERVER", "")
			t.Setenv("MYTOOL_PROFILE", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			for _, cmd := range []string{"token", "status"} {
				root := &cobra.Command{Use: "mytool"}
				Add(root, Config{Login: clilogin.Config{Issuer: "http://127.0.0.1:8787", ClientID: "mytool", AppName: "mytool",
					Store: tokenstore.NewMemory()}})
				out, errOut, code := run(root, append(append([]string{}, tc.args...), cmd)...)
				if code != 1 || !strings.Contains(out+errOut, tc.want) {
					t.Errorf("%s: exit %d, output %q; want %q", cmd, code, out+errOut, tc.want)
				}
				if cmd == "token" && (strings.Contains(errOut, "mytool: ") || strings.Contains(errOut, "clilogin") || !strings.HasPrefix(errOut, "You are not logged in to ")) {
					t.Errorf("token's message is not a sentence: %q", errOut)
				}
			}
		})
	}
}

// TestLogoutStoreUnreachable: logout with a keychain that cannot be reached
// does not say "nothing to do"; it says what remains and exits 2.
func TestLogoutStoreUnreachable(t *testing.T) {
	root := &cobra.Command{Use: "mytool"}
	Add(root, Config{Login: clilogin.Config{Issuer: testIssuer, ClientID: "mytool", AppName: "mytool", Store: brokenStore{}}})
	_, errOut, code := run(root, "logout")
	if code != ExitUnknown || strings.Contains(errOut, "nothing to do") || strings.Contains(errOut, "Logged out") ||
		!strings.Contains(errOut, "unix:path=/nonexistent is unreachable") || !strings.Contains(errOut, "Run `mytool logout` again") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
