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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/tokenstore"
)

// paired measures measured against baseline in the same loop, one of each
// per iteration, so that a change in the machine's load during the run
// weighs on both alike. It reports the median of each in milliseconds
// ("ms", "baseline-ms") and their ratio ("x-baseline", medians, so that a
// stray slow run of either does not decide the figure). ns/op is one
// baseline plus one measured.
func paired(b *testing.B, baseline, measured func() error) {
	var base, meas []time.Duration
	for b.Loop() {
		for _, f := range []struct {
			run func() error
			d   *[]time.Duration
		}{{baseline, &base}, {measured, &meas}} {
			start := time.Now()
			if err := f.run(); err != nil {
				b.Fatal(err)
			}
			*f.d = append(*f.d, time.Since(start))
		}
	}
	mb, mm := median(base), median(meas)
	b.ReportMetric(ms(mb), "baseline-ms")
	b.ReportMetric(ms(mm), "ms")
	if mb > 0 {
		b.ReportMetric(float64(mm)/float64(mb), "x-baseline")
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
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
// Ed25519 sign and verify. Reported by paired: the medians and
// x-baseline.
func BenchmarkLogin(b *testing.B) {
	ctx := context.Background()
	issuer, trivial := devBackend(b, nil), serve(b, trivialHandler)
	br := &browser{tr: &http.Transport{}}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 400) // a JWT's signing input
	paired(b, func() error {
		return baselineLogin(ctx, trivial, br, key, msg)
	}, func() error {
		return oneLogin(ctx, issuer, br)
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
