// Package bench holds keyloop's end-to-end benchmarks (make bench) and the
// load generator they run in a second process, so that the client's work
// does not count against the server measured.
//
// The load generator plays many CLIs at once against a keyloop token
// endpoint: Spec.Conns workers, each with one keep-alive connection of its
// own. Before the measured phase it obtains what it will present, each
// authorization code through the real authorize → sign-in → consent flow
// with its own PKCE verifier (RFC 7636) and a cookie jar like a browser's.
// The measured phase then sends only token requests (RFC 6749 §4.1.3 code
// exchanges or §6 refreshes), each worker one at a time.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Modes of a Spec.
const (
	// ModeExchange: each measured request exchanges a fresh code.
	ModeExchange = "exchange"
	// ModeRefresh: each worker holds one login and refreshes it in a loop,
	// each refresh presenting the refresh token the previous one returned.
	ModeRefresh = "refresh"
	// ModeFixed: each measured request is a POST to the token endpoint
	// with a code exchange's form, against a server that answers a fixed
	// body (the baseline).
	ModeFixed = "fixed"
)

// Spec is one load run.
type Spec struct {
	// Issuer is the server's base URL; requests go to Issuer plus the
	// paths below.
	Issuer string `json:"issuer"`
	// Mode is ModeExchange, ModeRefresh or ModeFixed.
	Mode string `json:"mode"`
	// Conns is the number of workers, each with one connection.
	Conns int `json:"conns"`
	// Requests is the number of measured requests, over all workers.
	Requests int `json:"requests"`
	// ClientID is the OAuth client. Empty means "mytool".
	ClientID string `json:"client_id"`
}

// Result is what a load run measured.
type Result struct {
	// Requests is the number of measured requests sent.
	Requests int `json:"requests"`
	// Errors is how many of them failed (transport error or not 200).
	Errors int `json:"errors"`
	// Seconds is the wall time of the measured phase.
	Seconds float64 `json:"seconds"`
	// P50ms and P99ms are the median and 99th percentile request
	// latencies, in milliseconds.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// LatenciesMs are the latencies of all measured requests, in
	// milliseconds, in no particular order (for merging runs).
	LatenciesMs []float64 `json:"latencies_ms"`
	// FirstError describes the first failed request, if any.
	FirstError string `json:"first_error,omitempty"`
}

// PerSecond is the measured requests per second.
func (r *Result) PerSecond() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Seconds
}

// Paths on the server (as server.AuthorizePath, server.TokenPath; this
// package does not import server, so a load generator measures the wire).
const (
	authorizePath = "/oauth/authorize"
	tokenPath     = "/oauth/token"
)

// ChildEnv is the environment variable that makes a test binary run as
// the load generator (see MainIfChild).
const ChildEnv = "KEYLOOP_LOADGEN"

// MainIfChild runs the load generator and exits when ChildEnv holds a
// Spec: the parent process re-executes its own test binary with it. The
// child prepares, writes "ready" on stdout, waits for a line on stdin,
// runs the measured phase, and writes the Result as JSON.
func MainIfChild() {
	raw := os.Getenv(ChildEnv)
	if raw == "" {
		return
	}
	var spec Spec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: bad spec:", err)
		os.Exit(2)
	}
	in := bufio.NewReader(os.Stdin)
	res, err := Run(context.Background(), spec, func() {
		fmt.Println("ready")
		in.ReadString('\n')
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// Run prepares the workers of spec, calls ready, and runs the measured
// phase. Preparation errors end the run; measured requests that fail are
// counted in Result.Errors.
func Run(ctx context.Context, spec Spec, ready func()) (*Result, error) {
	if spec.ClientID == "" {
		spec.ClientID = "mytool"
	}
	if spec.Conns <= 0 || spec.Requests < spec.Conns {
		return nil, fmt.Errorf("need 0 < Conns ≤ Requests, got %d and %d", spec.Conns, spec.Requests)
	}
	workers := make([]*worker, spec.Conns)
	var wg sync.WaitGroup
	errs := make([]error, spec.Conns)
	for i := range workers {
		n := spec.Requests / spec.Conns
		if i < spec.Requests%spec.Conns {
			n++
		}
		w := newWorker(spec, n)
		workers[i] = w
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = w.prepare(ctx) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ready()
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := &Result{Seconds: elapsed.Seconds()}
	var lat []time.Duration
	for _, w := range workers {
		res.Requests += len(w.latencies)
		res.Errors += w.errors
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
		lat = append(lat, w.latencies...)
	}
	for _, d := range lat {
		res.LatenciesMs = append(res.LatenciesMs, ms(d))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50ms = ms(lat[len(lat)/2])
		res.P99ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// worker is one simulated CLI (and its browser) with one connection.
type worker struct {
	spec     Spec
	n        int
	hc       *http.Client
	redirect string
	codes    []issued // ModeExchange: codes to exchange
	refresh  string   // ModeRefresh: the current refresh token

	latencies []time.Duration
	errors    int
	firstErr  error
}

// issued is a code with the verifier and redirect URI it was issued for.
type issued struct{ code, verifier string }

func newWorker(spec Spec, n int) *worker {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	return &worker{
		spec: spec, n: n,
		hc: &http.Client{Transport: tr, Jar: jar, Timeout: time.Minute,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		// The CLI's loopback listener is never contacted: the code is read
		// from the consent step's redirect.
		redirect: "http://127.0.0.1:9/callback",
	}
}

func (w *worker) prepare(ctx context.Context) error {
	switch w.spec.Mode {
	case ModeFixed:
		return nil
	case ModeExchange:
		w.codes = make([]issued, 0, w.n)
		for range w.n {
			c, err := w.authorize(ctx)
			if err != nil {
				return err
			}
			w.codes = append(w.codes, c)
		}
		return nil
	case ModeRefresh:
		c, err := w.authorize(ctx)
		if err != nil {
			return err
		}
		rt, err := w.exchange(ctx, c)
		if err != nil {
			return err
		}
		w.refresh = rt
		return nil
	}
	return fmt.Errorf("unknown mode %q", w.spec.Mode)
}

func (w *worker) run(ctx context.Context) {
	for i := range w.n {
		start := time.Now()
		var err error
		switch w.spec.Mode {
		case ModeFixed:
			err = w.fixed(ctx)
		case ModeExchange:
			_, err = w.exchange(ctx, w.codes[i])
		case ModeRefresh:
			var rt string
			if rt, err = w.doRefresh(ctx, w.refresh); err == nil {
				w.refresh = rt
			}
		}
		w.latencies = append(w.latencies, time.Since(start))
		if err != nil {
			w.errors++
			if w.firstErr == nil {
				w.firstErr = err
			}
			if w.spec.Mode == ModeRefresh {
				return // the chain is broken
			}
		}
	}
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// authorize runs the browser part of a login: authorization request with
// a new PKCE verifier, the sign-in/consent page, "Authorize"; it returns
// the code from the redirect to the CLI's loopback address.
func (w *worker) authorize(ctx context.Context) (issued, error) {
	verifier := randomString()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {w.spec.ClientID}, "redirect_uri": {w.redirect}, "response_type": {"code"},
		"state": {randomString()}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	resp, body, err := w.do(ctx, "GET", w.spec.Issuer+authorizePath+"?"+q.Encode(), nil)
	if err != nil {
		return issued{}, err
	}
	signin := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || signin == "" {
		return issued{}, fmt.Errorf("authorize: %s: %.200s", resp.Status, body)
	}
	signin = w.spec.Issuer + signin
	resp, body, err = w.do(ctx, "GET", signin, nil)
	if err != nil {
		return issued{}, err
	}
	m := csrfRE.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return issued{}, fmt.Errorf("consent page: %s: %.200s", resp.Status, body)
	}
	resp, body, err = w.do(ctx, "POST", signin, url.Values{"csrf_token": {string(m[1])}, "decision": {"authorize"}})
	if err != nil {
		return issued{}, err
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		return issued{}, fmt.Errorf("consent: %s: %.200s", resp.Status, body)
	}
	return issued{code: loc.Query().Get("code"), verifier: verifier}, nil
}

// exchange redeems c and returns the refresh token.
func (w *worker) exchange(ctx context.Context, c issued) (string, error) {
	return w.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {c.code},
		"code_verifier": {c.verifier}, "redirect_uri": {w.redirect}, "client_id": {w.spec.ClientID}})
}

func (w *worker) doRefresh(ctx context.Context, rt string) (string, error) {
	return w.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {w.spec.ClientID}})
}

// fixed sends a code exchange's form to the baseline server.
func (w *worker) fixed(ctx context.Context) error {
	_, err := w.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {"fixed-code-0123456789012345678901234567890"},
		"code_verifier": {"fixed-verifier-0123456789012345678901234567890"}, "redirect_uri": {w.redirect}, "client_id": {w.spec.ClientID}})
	return err
}

// token POSTs form to the token endpoint and returns the refresh token of
// a 200 answer.
func (w *worker) token(ctx context.Context, form url.Values) (string, error) {
	resp, body, err := w.do(ctx, "POST", w.spec.Issuer+tokenPath, form)
	if err != nil {
		return "", err
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %s: %.200s", resp.Status, body)
	}
	return tr.RefreshToken, nil
}

func (w *worker) do(ctx context.Context, method, u string, form url.Values) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
