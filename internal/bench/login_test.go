package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/tokenstore"
)

// withBaseline runs baseline and then measured as sub-benchmarks
// "baseline" and "measured"; the latter also reports its ns/op divided by
// the baseline's as "x-baseline".
func withBaseline(b *testing.B, baseline, measured func(*testing.B)) {
	var baseNs float64
	b.Run("baseline", func(b *testing.B) {
		baseline(b)
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("measured", func(b *testing.B) {
		measured(b)
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x-baseline")
		}
	})
}

// devBackend is keyloop's handler as examples/backend runs it in dev
// mode: the dev sign-in page, a self-signed Ed25519 minter, in-memory state.
// Requests it serves are counted in *count when count is not nil.
func devBackend(tb testing.TB, count *atomic.Int64) string {
	return serve(tb, func(issuer string) http.Handler {
		key, _ := server.GenerateKey()
		m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
		if err != nil {
			tb.Fatal(err)
		}
		dev, err := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32))})
		if err != nil {
			tb.Fatal(err)
		}
		h, err := server.New(server.Config{Issuer: issuer, Clients: []server.Client{{ID: "mytool", Name: "mytool"}},
			Authenticator: dev, Minter: m})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h.Close() })
		mux := http.NewServeMux()
		mux.Handle(server.MetadataPath, h)
		mux.Handle("/oauth/", h)
		if count == nil {
			return mux
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			count.Add(1)
			mux.ServeHTTP(w, r)
		})
	})
}

var formRE = regexp.MustCompile(`action="([^"]+)"`)

// browser is an http.Client playing a first-time user's browser: a new
// cookie jar per login, one keep-alive transport for the process.
type browser struct{ tr *http.Transport }

// login signs in at authURL as email on the dev sign-in page, clicks
// "Authorize", and follows the redirects to the CLI's /done page.
func (br *browser) login(ctx context.Context, issuer, authURL, email string) error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: br.tr, Jar: jar}
	get := func(u string, form url.Values) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		if form != nil {
			req, _ = http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s %s: %s", req.Method, u, resp.Status)
		}
		return string(b), err
	}
	page, err := get(authURL, nil) // → 302 → sign-in page
	if err != nil {
		return err
	}
	for _, step := range []url.Values{{"email": {email}}, {"decision": {"authorize"}}} {
		csrf, action := csrfRE.FindStringSubmatch(page), formRE.FindStringSubmatch(page)
		if csrf == nil || action == nil {
			return fmt.Errorf("no form on the page: %.300s", page)
		}
		step.Set("csrf_token", html.UnescapeString(csrf[1]))
		// Sign-in → 303 → consent page; consent → 302 → loopback
		// callback → 303 → /done.
		if page, err = get(issuer+html.UnescapeString(action[1]), step); err != nil {
			return err
		}
	}
	if !strings.Contains(page, "Signed in") {
		return fmt.Errorf("the CLI's page says: %.300s", page)
	}
	return nil
}

// oneLogin runs `mytool login` in-process against issuer with an
// in-memory token store, a new clilogin.Client as in a new process, and
// br as the browser.
func oneLogin(ctx context.Context, issuer string, br *browser) error {
	errc := make(chan error, 1)
	c, err := clilogin.New(clilogin.Config{
		Issuer: issuer, ClientID: "mytool", AppName: "mytool", Store: tokenstore.NewMemory(), Stdout: io.Discard,
		OpenBrowser: func(ctx context.Context, u string) error {
			go func() { errc <- br.login(ctx, issuer, u, "ada@example.com") }()
			return nil
		},
	})
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Login(lctx); err != nil {
		return err
	}
	return <-errc
}

// loginRoundTrips is what one login sends: the CLI's discovery, token and
// JWKS requests; the browser's authorize, sign-in page, sign-in POST,
// consent page, consent POST (to the server), callback and /done (to the
// CLI's loopback listener).
const (
	cliRoundTrips      = 3
	serverRoundTrips   = 5
	loopbackRoundTrips = 2
)

// baselineLogin makes a login's round trips against a trivial handler,
// over the same kinds of connections (new ones for the CLI and the
// loopback listener, the browser's kept alive), plus one Ed25519 signature
// and its verification.
func baselineLogin(ctx context.Context, trivial string, br *browser, key ed25519.PrivateKey, msg []byte) error {
	do := func(hc *http.Client, n int) error {
		for i := range n {
			method, body := "GET", io.Reader(nil)
			if i%2 == 1 {
				method, body = "POST", strings.NewReader("a=b")
			}
			req, _ := http.NewRequestWithContext(ctx, method, trivial, body)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil
	}
	cli := &http.Transport{}
	loop := &http.Transport{}
	defer cli.CloseIdleConnections()
	defer loop.CloseIdleConnections()
	jar, _ := cookiejar.New(nil)
	err := errors.Join(
		do(&http.Client{Transport: cli}, cliRoundTrips),
		do(&http.Client{Transport: br.tr, Jar: jar}, serverRoundTrips),
		do(&http.Client{Transport: loop}, loopbackRoundTrips),
	)
	sig := ed25519.Sign(key, msg)
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), msg, sig) {
		err = errors.New("ed25519 verify failed")
	}
	return err
}

func trivialHandler(string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
}

// BenchmarkLogin measures a whole browser login's machine time: keyloop's
// handler (dev sign-in, in-memory state), clilogin with an in-memory token
// store, and an http.Client as the browser, all on loopback TCP. The
// baseline is the same ten round trips against a trivial handler plus one
// Ed25519 sign and verify. Reported: ns/op, and x-baseline.
func BenchmarkLogin(b *testing.B) {
	ctx := context.Background()
	issuer, trivial := devBackend(b, nil), serve(b, trivialHandler)
	br := &browser{tr: &http.Transport{}}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 400) // a JWT's signing input
	withBaseline(b, func(b *testing.B) {
		for b.Loop() {
			if err := baselineLogin(ctx, trivial, br, key, msg); err != nil {
				b.Fatal(err)
			}
		}
	}, func(b *testing.B) {
		for b.Loop() {
			if err := oneLogin(ctx, issuer, br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLoginHarness runs BenchmarkLogin's login and baseline once each, and
// checks that the baseline makes as many requests to the server as a login.
func TestLoginHarness(t *testing.T) {
	ctx := context.Background()
	br := &browser{tr: &http.Transport{}}
	var count atomic.Int64
	if err := oneLogin(ctx, devBackend(t, &count), br); err != nil {
		t.Fatal(err)
	}
	if n := count.Load(); n != cliRoundTrips+serverRoundTrips {
		t.Fatalf("a login made %d requests to the server; the baseline makes %d", n, cliRoundTrips+serverRoundTrips)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if err := baselineLogin(ctx, serve(t, trivialHandler), br, key, []byte("m")); err != nil {
		t.Fatal(err)
	}
}
