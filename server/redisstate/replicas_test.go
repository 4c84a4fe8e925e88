package redisstate_test

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
	"golang.org/x/oauth2"
)

// The public issuer both replicas serve under; test clients rewrite it to
// one replica's listener per request, as a load balancer would.
const issuer = "http://keyloop.test"

// revocationBound is the replicas' RevocationCacheTTL in these tests.
const revocationBound = 300 * time.Millisecond

// offsetClock is the real clock plus an offset the test can advance (to
// step past a refresh token rotation grace period, for instance).
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// replica is one instance of the backend: its own Handler, listener and
// Redis connection pool, sharing the Redis, the signing key and the dev
// sign-in key with the others.
type replica struct {
	name  string
	h     *server.Handler
	srv   *httptest.Server
	state *redisstate.Store
}

type cluster struct {
	t        *testing.T
	redis    *testenv.RedisServer
	replicas []*replica
	clock    *offsetClock
	callback string // the CLI's loopback redirect URI (never contacted)
}

// newCluster starts n replicas on one Redis; storeTimeout is their
// redisstate Options.Timeout.
func newCluster(t *testing.T, n int, storeTimeout time.Duration) *cluster {
	t.Helper()
	r := testenv.Redis(t)
	key, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, redis: r, clock: &offsetClock{}, callback: "http://127.0.0.1:1/callback"}
	devKey := []byte(strings.Repeat("d", 32))
	for i := range n {
		state := open(t, r.URL, redisstate.Options{Prefix: "test:", Timeout: storeTimeout})
		minter, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key, Now: c.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		dev, err := server.NewDevAuthenticator(server.DevConfig{Key: devKey, Now: c.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		cfg := server.Config{
			Issuer: issuer, Clients: []server.Client{{ID: "mytool", DeviceFlow: true}}, Authenticator: dev, Minter: minter,
			State: state, Now: c.clock.Now, RevocationCacheTTL: revocationBound,
		}
		h, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		mux := http.NewServeMux()
		mux.Handle(server.MetadataPath, h)
		mux.Handle("/oauth/", h)
		mux.Handle("GET /api/me", h.RequireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cl, _ := server.ClaimsFromContext(r.Context())
			json.NewEncoder(w).Encode(map[string]string{"sub": cl.Subject})
		})))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		c.replicas = append(c.replicas, &replica{name: string(rune('A' + i)), h: h, srv: srv, state: state})
	}
	return c
}

// routed is a RoundTripper that sends requests for the issuer to the
// replica pick chooses, like a load balancer; other hosts are refused.
type routed struct {
	c    *cluster
	pick func(*http.Request) *replica
	base http.RoundTripper
}

func (rt routed) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != "keyloop.test" {
		return nil, fmt.Errorf("test browser: no route to %s", req.URL.Host)
	}
	to := rt.pick(req)
	u, _ := url.Parse(to.srv.URL)
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	resp, err := rt.base.RoundTrip(out)
	if resp != nil {
		resp.Request = req // the browser saw the issuer's URL
	}
	return resp, err
}

// roundRobin picks replicas in turn, across all clients that share it.
func (c *cluster) roundRobin() func(*http.Request) *replica {
	var n atomic.Uint64
	return func(*http.Request) *replica { return c.replicas[(n.Add(1)-1)%uint64(len(c.replicas))] }
}

// on always picks replica i.
func (c *cluster) on(i int) func(*http.Request) *replica {
	return func(*http.Request) *replica { return c.replicas[i] }
}

var sharedTransport = &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 128}

// client returns an http.Client routed by pick; jar set means a browser
// (cookies; redirects followed until the CLI's callback).
func (c *cluster) client(pick func(*http.Request) *replica, browser bool) *http.Client {
	hc := &http.Client{Transport: routed{c: c, pick: pick, base: sharedTransport}, Timeout: 60 * time.Second}
	if browser {
		hc.Jar, _ = cookiejar.New(nil)
		hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != "keyloop.test" {
				return http.ErrUseLastResponse // the CLI's loopback callback
			}
			return nil
		}
	}
	return hc
}

var (
	formRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

// login is one person's login through a browser spread by pick: authorize,
// dev sign-in, consent; it returns the code and verifier the CLI would
// hold.
func (c *cluster) login(pick func(*http.Request) *replica, email string) (code, verifier string, err error) {
	b := c.client(pick, true)
	verifier = oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	cfg := c.oauth()
	p, err := get(b, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		return "", "", err
	}
	if p.status == http.StatusFound { // sent back to the CLI at once: an error
		return "", "", fmt.Errorf("authorize answered %s", p.location)
	}
	if p, err = submit(b, p, url.Values{"email": {email}}); err != nil {
		return "", "", err
	}
	if !strings.Contains(p.body, ">Authorize</button>") {
		return "", "", fmt.Errorf("expected the consent page, got %d:\n%s", p.status, p.body)
	}
	if p, err = submit(b, p, url.Values{"decision": {"authorize"}}); err != nil {
		return "", "", err
	}
	loc, _ := url.Parse(p.location)
	if p.status != http.StatusFound || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
		return "", "", fmt.Errorf("consent answered %d → %s", p.status, p.location)
	}
	return loc.Query().Get("code"), verifier, nil
}

func (c *cluster) oauth() *oauth2.Config {
	return &oauth2.Config{ClientID: "mytool", RedirectURL: c.callback, Endpoint: oauth2.Endpoint{
		AuthURL: issuer + server.AuthorizePath, TokenURL: issuer + server.TokenPath, AuthStyle: oauth2.AuthStyleInParams}}
}

type page struct {
	status   int
	url      *url.URL
	location string
	header   http.Header
	body     string
}

func do(hc *http.Client, req *http.Request) (page, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, location: resp.Header.Get("Location"), header: resp.Header, body: string(body)}, nil
}

func get(hc *http.Client, u string) (page, error) {
	req, _ := http.NewRequest("GET", u, nil)
	return do(hc, req)
}

func submit(hc *http.Client, p page, fields url.Values) (page, error) {
	m, cs := formRE.FindStringSubmatch(p.body), csrfRE.FindStringSubmatch(p.body)
	if m == nil || cs == nil {
		return page{}, fmt.Errorf("no form on the %d page %s:\n%s", p.status, p.url, p.body)
	}
	action, _ := p.url.Parse(html.UnescapeString(m[1]))
	form := url.Values{"csrf_token": {html.UnescapeString(cs[1])}}
	for k, v := range fields {
		form[k] = v
	}
	req, _ := http.NewRequest("POST", action.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(hc, req)
}

// tokenReply is a token or revocation endpoint answer.
type tokenReply struct {
	status     int
	retryAfter string
	m          map[string]any
}

func (r tokenReply) str(k string) string { s, _ := r.m[k].(string); return s }

func (c *cluster) post(i int, path string, form url.Values) tokenReply {
	c.t.Helper()
	r, err := c.postErr(i, path, form)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *cluster) postErr(i int, path string, form url.Values) (tokenReply, error) {
	resp, err := c.client(c.on(i), false).PostForm(issuer+path, form)
	if err != nil {
		return tokenReply{}, err
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return tokenReply{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), m: m}, nil
}

func (c *cluster) exchange(i int, code, verifier string) tokenReply {
	c.t.Helper()
	return c.post(i, server.TokenPath, exchangeForm(c, code, verifier))
}

func exchangeForm(c *cluster, code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {c.callback}, "client_id": {"mytool"}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"mytool"}}
}

func (c *cluster) refresh(i int, rt string) tokenReply {
	c.t.Helper()
	return c.post(i, server.TokenPath, refreshForm(rt))
}

// api calls the protected route on replica i with the access token.
func (c *cluster) api(i int, at string) (int, http.Header) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	p, err := do(c.client(c.on(i), false), req)
	if err != nil {
		c.t.Fatal(err)
	}
	return p.status, p.header
}

// mustLogin logs in through replica i (every browser request) and
// exchanges the code on replica j.
func (c *cluster) mustLogin(i, j int) tokenReply {
	c.t.Helper()
	code, verifier, err := c.login(c.on(i), "ada@example.com")
	if err != nil {
		c.t.Fatal(err)
	}
	r := c.exchange(j, code, verifier)
	if r.status != 200 {
		c.t.Fatalf("exchange on %s: %d %v", c.replicas[j].name, r.status, r.m)
	}
	return r
}

// eventually polls cond until it holds, failing after a generous deadline
// (it guards against hangs; how long it took is logged, not asserted).
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: still not the case after 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// A code issued through A is redeemed once on B, and then refused on A.
func TestCodeIssuedOnARedeemedOnB(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	code, verifier, err := c.login(c.on(0), "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	r := c.exchange(1, code, verifier)
	if r.status != 200 || r.str("refresh_token") == "" {
		t.Fatalf("exchange on B of a code from A: %d %v", r.status, r.m)
	}
	if st, _ := c.api(0, r.str("access_token")); st != 200 {
		t.Fatalf("A refuses B's token: %d", st)
	}
	if again := c.exchange(0, code, verifier); again.status != 400 || again.str("error") != "invalid_grant" {
		t.Fatalf("second redemption on A: %d %v", again.status, again.m)
	}
}

// A browser whose every request lands on another replica still logs in.
func TestBrowserAlternatingReplicas(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	code, verifier, err := c.login(c.roundRobin(), "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.exchange(1, code, verifier); r.status != 200 {
		t.Fatalf("exchange: %d %v", r.status, r.m)
	}
}

// Concurrent redemptions of one code on A and B: exactly one wins.
func TestConcurrentRedemptionOnTwoReplicas(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	for round := range 20 {
		code, verifier, err := c.login(c.on(round%2), "ada@example.com")
		if err != nil {
			t.Fatal(err)
		}
		var wins, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				r, err := c.postErr(i%2, server.TokenPath, exchangeForm(c, code, verifier))
				switch {
				case err != nil:
					t.Error(err)
				case r.status == 200:
					wins.Add(1)
				case r.status == 400 && r.str("error") == "invalid_grant":
					refused.Add(1)
				default:
					t.Errorf("concurrent redemption: %d %v", r.status, r.m)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || refused.Load() != 3 {
			t.Fatalf("round %d: %d redemptions won, %d refused; want exactly 1 and 3", round, wins.Load(), refused.Load())
		}
	}
}

// A refresh token rotated on A and replayed on B (past any rotation grace
// period, and twice) ends the login on both replicas.
func TestRefreshReplayOnOtherReplica(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	first := c.mustLogin(0, 0)
	rotated := c.refresh(0, first.str("refresh_token"))
	if rotated.status != 200 {
		t.Fatalf("refresh on A: %d %v", rotated.status, rotated.m)
	}
	at := rotated.str("access_token")
	for i := range c.replicas {
		if st, _ := c.api(i, at); st != 200 {
			t.Fatalf("before the replay, %s refuses the token: %d", c.replicas[i].name, st)
		}
	}
	c.clock.Advance(10 * time.Minute) // past any rotation grace period
	for range 2 {
		if r := c.refresh(1, first.str("refresh_token")); r.status != 400 || r.str("error") != "invalid_grant" {
			t.Fatalf("replay on B: %d %v", r.status, r.m)
		}
	}
	for i := range c.replicas {
		if r := c.refresh(i, rotated.str("refresh_token")); r.status != 400 {
			t.Fatalf("after the replay, the current refresh token still works on %s: %d", c.replicas[i].name, r.status)
		}
	}
	if st, _ := c.api(1, at); st != 401 {
		t.Fatalf("B (which saw the replay) still accepts the access token: %d", st)
	}
	took := eventually(t, "A refuses the access token after the replay on B", func() bool { st, _ := c.api(0, at); return st == 401 })
	t.Logf("A refused the access token %v after the replay on B (bound %v)", took.Round(time.Millisecond), revocationBound)
}

// Logout (RFC 7009 revocation) on B is honoured by A's middleware within
// the revocation bound, and by B's at once.
func TestLogoutOnBSeenByA(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	tok := c.mustLogin(0, 0)
	at := tok.str("access_token")
	if st, _ := c.api(0, at); st != 200 { // A has now cached "not revoked"
		t.Fatalf("A: %d", st)
	}
	if r := c.post(1, server.RevokePath, url.Values{"token": {tok.str("refresh_token")}, "client_id": {"mytool"}}); r.status != 200 {
		t.Fatalf("logout on B: %d %v", r.status, r.m)
	}
	if st, _ := c.api(1, at); st != 401 {
		t.Fatalf("B still accepts the token it revoked: %d", st)
	}
	took := eventually(t, "A refuses the token revoked on B", func() bool { st, _ := c.api(0, at); return st == 401 })
	t.Logf("A refused the token %v after the logout on B (bound %v)", took.Round(time.Millisecond), revocationBound)
	if r := c.refresh(0, tok.str("refresh_token")); r.status != 400 {
		t.Fatalf("refresh on A after logout on B: %d", r.status)
	}
}

// checkUnavailable fails unless r is 503 temporarily_unavailable with
// Retry-After.
func checkUnavailable(t *testing.T, what string, r tokenReply) {
	t.Helper()
	if r.status != 503 || r.str("error") != "temporarily_unavailable" || r.retryAfter == "" {
		t.Fatalf("%s with Redis unreachable: %d %v (Retry-After %q); want 503 temporarily_unavailable with Retry-After", what, r.status, r.m, r.retryAfter)
	}
}

// Redis frozen (as when overloaded or cut off): every endpoint answers a
// clear 503 within the store timeout, the middleware fails closed once its
// cached answer is older than the bound, and when Redis thaws, the code and
// refresh token presented during the outage work exactly once.
func TestRedisFrozen(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	tok := c.mustLogin(0, 1)
	code, verifier, err := c.login(c.on(1), "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	rt, at := tok.str("refresh_token"), tok.str("access_token")
	if st, _ := c.api(0, at); st != 200 {
		t.Fatal(st)
	}

	c.redis.Pause()
	thawed := false
	defer func() {
		if !thawed {
			c.redis.Resume()
		}
	}()
	checkUnavailable(t, "refresh on A", c.refresh(0, rt))
	checkUnavailable(t, "code exchange on B", c.exchange(1, code, verifier))
	checkUnavailable(t, "revoke on B", c.post(1, server.RevokePath, url.Values{"token": {rt}}))
	resp, err := c.client(c.on(0), true).Get(c.oauth().AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "error=temporarily_unavailable") {
		t.Fatalf("authorize on A with Redis frozen: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	eventually(t, "A's middleware answers 503 once its cached answer is stale", func() bool {
		st, h := c.api(0, at)
		if st != 200 && (st != 503 || h.Get("Retry-After") == "") {
			t.Fatalf("middleware with Redis frozen: %d; want 200 (cached) or 503 with Retry-After", st)
		}
		return st == 503
	})

	c.redis.Resume()
	thawed = true
	r := c.refresh(1, rt)
	if r.status != 200 {
		t.Fatalf("refresh on B once Redis is back: %d %v; the token presented during the outage must still work", r.status, r.m)
	}
	if x := c.exchange(0, code, verifier); x.status != 200 {
		t.Fatalf("code exchange on A once Redis is back: %d %v", x.status, x.m)
	}
	if x := c.exchange(1, code, verifier); x.status != 400 {
		t.Fatalf("the code was redeemed twice: %d", x.status)
	}
	eventually(t, "A's middleware accepts tokens again", func() bool { st, _ := c.api(0, r.str("access_token")); return st == 200 })
	c.clock.Advance(10 * time.Minute) // past the refresh token reuse grace period
	if again := c.refresh(0, rt); again.status != 400 {
		t.Fatalf("the refresh token was accepted twice: %d", again.status)
	}
}

// Redis stopped and started again empty (no persistence): 503s while it is
// down; afterwards logins work again, and what Redis forgot (codes, refresh
// tokens) is refused, never accepted twice.
func TestRedisRestarted(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	tok := c.mustLogin(0, 1)
	code, verifier, err := c.login(c.on(1), "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	c.redis.Stop()
	checkUnavailable(t, "refresh on A", c.refresh(0, tok.str("refresh_token")))
	checkUnavailable(t, "code exchange on B", c.exchange(1, code, verifier))
	if _, _, err := c.login(c.on(0), "carol@example.com"); err == nil || !strings.Contains(err.Error(), "temporarily_unavailable") {
		t.Fatalf("login with Redis down: %v; want temporarily_unavailable", err)
	}
	c.redis.Start()
	if r := c.refresh(0, tok.str("refresh_token")); r.status != 400 || r.str("error") != "invalid_grant" {
		t.Fatalf("refresh token Redis forgot: %d %v; want invalid_grant (sign in again)", r.status, r.m)
	}
	if r := c.exchange(1, code, verifier); r.status != 400 {
		t.Fatalf("code Redis forgot: %d %v", r.status, r.m)
	}
	again := c.mustLogin(1, 0)
	if r := c.refresh(1, again.str("refresh_token")); r.status != 200 {
		t.Fatalf("refresh after Redis came back: %d %v", r.status, r.m)
	}
}

// 1,000 concurrent logins, each a browser (an http.Client) whose requests
// alternate between two replicas, then a code exchange and a refresh on
// alternating replicas: no errors, and no code or refresh token is ever
// accepted twice.
func TestLoadThousandLogins(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const logins = 1000
	// Under this load (and the race detector) Redis calls queue for the
	// connection pool: a generous timeout, only to avoid hangs.
	c := newCluster(t, 2, 20*time.Second)
	type result struct{ code, verifier, rt1, rt2 string }
	results := make([]result, logins)
	var failures atomic.Int32
	fail := func(format string, a ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, a...)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range logins {
		wg.Go(func() {
			code, verifier, err := c.login(c.roundRobin(), fmt.Sprintf("user%d@example.com", i))
			if err != nil {
				fail("login %d: %v", i, err)
				return
			}
			x, err := c.postErr(i%2, server.TokenPath, exchangeForm(c, code, verifier))
			if err != nil || x.status != 200 {
				fail("exchange %d: %v %d %v", i, err, x.status, x.m)
				return
			}
			r, err := c.postErr((i+1)%2, server.TokenPath, refreshForm(x.str("refresh_token")))
			if err != nil || r.status != 200 {
				fail("refresh %d: %v %d %v", i, err, r.status, r.m)
				return
			}
			results[i] = result{code, verifier, x.str("refresh_token"), r.str("refresh_token")}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d logins failed", n, logins)
	}
	t.Logf("%d logins (authorize, sign-in, consent, exchange, refresh; 7 requests each over 2 replicas) in %v: %.0f logins/s",
		logins, elapsed.Round(time.Millisecond), logins/elapsed.Seconds())

	seen := map[string]bool{}
	for _, r := range results {
		for _, s := range []string{r.code, r.rt1, r.rt2} {
			if seen[s] {
				t.Fatal("a code or refresh token was handed out twice")
			}
			seen[s] = true
		}
	}
	// Presented again on the other replica, each code is refused (half of
	// the logins), and so is each rotated refresh token past the reuse grace
	// period (the other half; a code reuse would end the login and hide a
	// refresh token accepted twice).
	var accepted atomic.Int32
	replay := func(parity int, form func(result) url.Values) {
		for i, r := range results {
			if i%2 != parity {
				continue
			}
			wg.Go(func() {
				x, err := c.postErr((i+1)%2, server.TokenPath, form(r))
				if err != nil || x.status != 400 {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
	}
	replay(0, func(r result) url.Values { return exchangeForm(c, r.code, r.verifier) })
	c.clock.Advance(10 * time.Minute)
	replay(1, func(r result) url.Values { return refreshForm(r.rt1) })
	if n := accepted.Load(); n > 0 {
		t.Fatalf("%d codes or refresh tokens were accepted a second time", n)
	}
}
