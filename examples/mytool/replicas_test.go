package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

// roundRobin is a reverse proxy that sends each request to the next
// backend in turn, as a load balancer would.
type roundRobin struct {
	mu       sync.Mutex
	backends []*url.URL
	next     int
	served   []atomic.Int32
}

func (p *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	i := p.next
	p.next = (p.next + 1) % len(p.backends)
	p.mu.Unlock()
	p.served[i].Add(1)
	target := p.backends[i]
	(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host // the backends serve the public issuer
	}}).ServeHTTP(w, r)
}

// Two examples/backend processes sharing one Redis (-redis) and one issuer,
// behind a round-robin proxy: `mytool login`, `token` (with a refresh),
// `api` and `logout` work with every request alternating between them.
func TestTwoBackendsBehindRoundRobin(t *testing.T) {
	testenv.RequireKeychain(t)
	redis := testenv.Redis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &roundRobin{}
	front := httptest.NewUnstartedServer(proxy)
	front.Listener.Close()
	front.Listener = ln
	issuer := "http://" + ln.Addr().String()

	// Both replicas use the same dev keys (signing key, sign-in cookie key)
	// from one -data directory; the state is in Redis. Each listens on its
	// own address, printed nowhere: the issuer is the proxy's.
	data := filepath.Join(t.TempDir(), "shared")
	var backends []*backendProc
	for range 2 {
		addrLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := addrLn.Addr().String()
		addrLn.Close()
		be := startBackend(t, "-addr", addr, "-data", data, "-issuer", issuer, "-redis", redis.URL, "-token-ttl", "8s")
		backends = append(backends, be)
		proxy.backends = append(proxy.backends, &url.URL{Scheme: "http", Host: addr})
	}
	proxy.served = make([]atomic.Int32, len(backends))
	front.Start()
	t.Cleanup(front.Close)

	m := newMytool(t, issuer)
	if stderr, code, _ := browserLogin(t, m, "ada@example.com", "Authorize"); code != 0 {
		t.Fatalf("login through the round-robin proxy: exit %d\n%s", code, stderr)
	}
	out, errOut, code := m.run(t, "token")
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, errOut)
	}
	t1 := strings.TrimSpace(out)
	c1 := verify(t, issuer, t1)
	if out, errOut, code := m.run(t, "api", "/api/me"); code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Fatalf("api /api/me: exit %d, %q, %q", code, out, errOut)
	}

	// In the last quarter of the token's life, `mytool token` refreshes.
	sleepUntil(claimTime(t, c1, "exp").Add(-claimTime(t, c1, "exp").Sub(claimTime(t, c1, "iat")) / 4))
	out, errOut, code = m.run(t, "token")
	t2 := strings.TrimSpace(out)
	if code != 0 || t2 == t1 {
		t.Fatalf("token in the refresh window: exit %d, refreshed %v: %s", code, t2 != t1, errOut)
	}
	if n := backends[0].refreshes() + backends[1].refreshes(); n != 1 {
		t.Fatalf("%d refresh grants across the replicas; want 1", n)
	}
	if out, errOut, code := m.run(t, "api", "/api/me"); code != 0 || !strings.Contains(out, "ada@example.com") {
		t.Fatalf("api /api/me after the refresh: exit %d, %q, %q", code, out, errOut)
	}

	if _, errOut, code := m.run(t, "logout"); code != 0 {
		t.Fatalf("logout: exit %d: %s", code, errOut)
	}
	// The logged-out token is refused by both replicas (the one that did
	// not see the logout within its revocation bound, 5 s by default):
	// four refusals in a row through the proxy cover both twice.
	refusals := 0
	deadline := time.Now().Add(30 * time.Second)
	for refusals < 4 {
		if time.Now().After(deadline) {
			t.Fatal("a replica still accepts the logged-out token after 30s")
		}
		req, _ := http.NewRequest("GET", issuer+"/api/me", nil)
		req.Header.Set("Authorization", "Bearer "+t2)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			refusals++
		case http.StatusOK:
			refusals = 0
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("/api/me with the logged-out token: %s", resp.Status)
		}
	}
	for i := range backends {
		if n := proxy.served[i].Load(); n < 5 {
			t.Errorf("replica %d served %d requests; the proxy did not spread the traffic", i, n)
		}
	}
}
