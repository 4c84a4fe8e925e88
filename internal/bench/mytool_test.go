package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/tokenstore"
)

// mytoolEnv is a built examples/mytool with a fresh login in the real
// keychain, and the secret-tool command that reads the same item.
type mytoolEnv struct {
	mytool   *exec.Cmd // template: path, args, env
	lookup   *exec.Cmd
	requests *atomic.Int64 // requests the backend served after the login
}

// newMytoolEnv builds mytool, logs in to a dev backend through clilogin's
// default store (the private keychain of scripts/with-keyring, service
// "mytool", as mytool uses it) and returns how to run `mytool token` and
// `secret-tool lookup` for that login.
func newMytoolEnv(tb testing.TB) *mytoolEnv {
	tb.Helper()
	testenv.RequireKeychain(tb)
	secretTool, err := exec.LookPath("secret-tool")
	if err != nil {
		testenv.Missing(tb, "secret-tool", "apt-get install libsecret-tools")
	}
	bin := filepath.Join(tb.TempDir(), "mytool")
	build := exec.Command("go", "build", "-o", bin, "github.com/keyloop/keyloop/examples/mytool")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build mytool: %v\n%s", err, out)
	}

	var count atomic.Int64
	issuer := devBackend(tb, &count)
	br := &browser{tr: &http.Transport{}}
	errc := make(chan error, 1)
	c, err := clilogin.New(clilogin.Config{
		Issuer: issuer, ClientID: "mytool", AppName: "mytool", Stdout: &bytes.Buffer{},
		OpenBrowser: func(ctx context.Context, u string) error {
			go func() { errc <- br.login(ctx, issuer, u, "ada@example.com") }()
			return nil
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	sess, err := c.Login(context.Background())
	if err == nil {
		err = <-errc
	}
	if err != nil {
		tb.Fatal(err)
	}
	if sess.Location.Kind != tokenstore.KindKeychain {
		tb.Fatalf("the login went to %v, not the keychain", sess.Location.Kind)
	}
	tb.Cleanup(func() { c.Logout(context.Background()) })
	count.Store(0)

	env := append(os.Environ(), "MYTOOL_SERVER="+issuer)
	mt := exec.Command(bin, "token")
	mt.Env = env
	lk := exec.Command(secretTool, "lookup", "service", "mytool", "username", tokenstore.Key("", issuer, "mytool"))
	lk.Env = env
	return &mytoolEnv{mytool: mt, lookup: lk, requests: &count}
}

// output runs a copy of tmpl and returns its stdout.
func output(tmpl *exec.Cmd) (string, error) {
	cmd := exec.Command(tmpl.Path, tmpl.Args[1:]...)
	cmd.Env = tmpl.Env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(tmpl.Args, " "), err, stderr.String())
	}
	return string(out), nil
}

// run is output for a test: an error ends it.
func run(tb testing.TB, tmpl *exec.Cmd) string {
	tb.Helper()
	out, err := output(tmpl)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// BenchmarkMytoolToken measures `mytool token` as a whole process (start,
// cobra, the keychain read over D-Bus, printing) with a fresh token in the
// real keychain, against `secret-tool lookup` of the same keychain item
// (libsecret's own command-line reader), one of each in turn (see
// paired). It fails if mytool contacted the server.
func BenchmarkMytoolToken(b *testing.B) {
	e := newMytoolEnv(b)
	paired(b, func() error {
		_, err := output(e.lookup)
		return err
	}, func() error {
		_, err := output(e.mytool)
		return err
	})
	if n := e.requests.Load(); n != 0 {
		b.Fatalf("mytool token made %d requests to the server for a fresh token", n)
	}
}

// TestMytoolTokenHarness runs BenchmarkMytoolToken's two commands once
// each: mytool prints the stored access token without a request to the
// server, and secret-tool finds the same keychain item.
func TestMytoolTokenHarness(t *testing.T) {
	e := newMytoolEnv(t)
	tok := strings.TrimSpace(run(t, e.mytool))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("mytool token printed %q", tok)
	}
	if item := run(t, e.lookup); !strings.Contains(item, tok) {
		t.Fatalf("secret-tool found another item: %.100q", item)
	}
	if n := e.requests.Load(); n != 0 {
		t.Fatalf("mytool token made %d requests to the server for a fresh token", n)
	}
}
