package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
)

// faultProxy sits between mytool (and the browser) and a real
// examples/backend, whose issuer is the proxy's URL, and injects the faults
// of a flaky network into the token and JWKS traffic: a JWKS that answers 503 once
// right after a refresh rotated the token, a refresh answer held back or
// dropped after the backend committed it, expires_in values the client
// must survive. It records every refresh token presented.
type faultProxy struct {
	URL    string
	target string // the backend's host:port
	ln     net.Listener
	srv    *http.Server

	FailJWKSAfterRotation atomic.Bool   // the first JWKS request after a refresh rotated gets 503
	jwksFail              atomic.Bool   // armed by a rotation
	DelayRefresh          atomic.Int64  // nanoseconds a refresh answer is held back
	DropRefresh           atomic.Bool   // close the connection instead of passing a refresh answer on
	ExpiresIn             atomic.Value  // string: raw JSON put in place of expires_in
	answered              chan struct{} // receives (without blocking) when a refresh answer is in hand

	mu       sync.Mutex
	refreshs []string // refresh tokens presented, in order
}

// newFaultProxy listens on a kernel-chosen loopback port; start it with
// startBackendBehind.
func newFaultProxy(t *testing.T) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{URL: "http://" + ln.Addr().String(), ln: ln, answered: make(chan struct{}, 16)}
	p.ExpiresIn.Store("")
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// startBackendBehind starts examples/backend on a free port with the
// proxy's URL as its issuer, and points the proxy at it.
func startBackendBehind(t *testing.T, p *faultProxy, args ...string) *backendProc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		p.target = "127.0.0.1:" + port
		be, err := tryStartBackend(t, append([]string{"-addr", p.target, "-issuer", p.URL}, args...)...)
		if err == nil {
			return be
		}
		if attempt == 4 {
			t.Fatal(err)
		}
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// tryStartBackend is startBackend with an error instead of a fatal failure
// when the process does not come up (its port was taken meanwhile).
func tryStartBackend(t *testing.T, args ...string) (*backendProc, error) {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, append([]string{"-data", t.TempDir()}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	be := &backendProc{cmd: cmd}
	be.stderr = &testenv.SyncBuffer{}
	cmd.Stderr = be.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("backend exited: %s", be.stderr.String())
		}
		be.URL = strings.TrimPrefix(line, "keyloop backend listening on ")
		t.Cleanup(be.stop)
		return be, nil
	case <-time.After(20 * time.Second):
		be.stop()
		return nil, fmt.Errorf("backend did not start; stderr:\n%s", be.stderr.String())
	}
}

// Refreshes returns the refresh tokens presented so far.
func (p *faultProxy) Refreshes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refreshs...)
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	refresh := false
	if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
		form, _ := url.ParseQuery(string(body))
		if form.Get("grant_type") == "refresh_token" {
			refresh = true
			p.mu.Lock()
			p.refreshs = append(p.refreshs, form.Get("refresh_token"))
			p.mu.Unlock()
		}
	}
	if r.URL.Path == "/oauth/jwks" && p.jwksFail.CompareAndSwap(true, false) {
		http.Error(w, "JWKS temporarily unavailable (fault injected)", http.StatusServiceUnavailable)
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if r.URL.Path == "/oauth/token" && resp.StatusCode == http.StatusOK {
		if raw := p.ExpiresIn.Load().(string); raw != "" {
			var m map[string]json.RawMessage
			if json.Unmarshal(rb, &m) == nil {
				m["expires_in"] = json.RawMessage(raw)
				rb, _ = json.Marshal(m)
			}
		}
	}
	if refresh && resp.StatusCode == http.StatusOK {
		if p.FailJWKSAfterRotation.Load() {
			p.jwksFail.Store(true)
		}
		select {
		case p.answered <- struct{}{}:
		default:
		}
		if p.DropRefresh.Load() {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close() // the backend committed; its answer never arrives
				return
			}
		}
		if d := time.Duration(p.DelayRefresh.Load()); d > 0 {
			time.Sleep(d)
		}
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(rb)
}
