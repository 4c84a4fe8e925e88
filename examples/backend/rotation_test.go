package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyloop/keyloop/clilogin"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/tokenstore"
)

// Rotating the shared signing key of two replicas, step by step as the
// README says, while a CLI (clilogin.Client) holds a token from the old key
// and refreshes it, and its API calls go to either replica: no API call and
// no Token call fails, the CLI verifies the tokens of the new key (fetching
// the JWKS from whichever replica answers), and retiring the old key ends
// only the old key's tokens.
func TestKeyRotationAcrossReplicasWithCLI(t *testing.T) {
	keys := t.TempDir()
	writeKeyFile(t, keys, "2026-01")

	// A round-robin proxy in front of two replicas, both publishing its URL
	// as their issuer. Sign-in and token requests stick to replica A (the
	// replicas keep their login state apart here); metadata, JWKS and the
	// API alternate.
	replicas := []string{freeAddr(t), freeAddr(t)}
	var turn atomic.Int64
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		target := replicas[0]
		switch r.In.URL.Path {
		case server.AuthorizePath, server.SignInPath, server.TokenPath, server.RevokePath:
		default:
			target = replicas[turn.Add(1)%2]
		}
		r.SetURL(&url.URL{Scheme: "http", Host: target})
		r.Out.Host = r.In.Host
	}})
	defer proxy.Close()
	for _, addr := range replicas {
		startRun(t, "-addr", addr, "-data", t.TempDir(), "-keys", keys, "-keys-reload", "100ms", "-token-ttl", "1h", "-issuer", proxy.URL)
	}

	var (
		offset    atomic.Int64 // the CLI's clock runs ahead by this much to make it refresh
		refreshes = make(chan error, 100)
	)
	cli, err := clilogin.New(clilogin.Config{
		Issuer: proxy.URL, ClientID: "mytool", AppName: "keyloop-rotation-test",
		Store: tokenstore.NewMemory(), Stdout: io.Discard, Terminal: clilogin.TerminalPlain,
		OpenBrowser: func(ctx context.Context, u string) error { return browse(u, "ada@example.com") },
		Now:         func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		OnRefreshError: func(err error) {
			select {
			case refreshes <- err:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Login(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := cli.Token(ctx)
	if err != nil || kidOf(t, first.AccessToken) != "2026-01" {
		t.Fatalf("token after login: %v", err)
	}

	// The CLI keeps calling the API through the proxy, and so does a copy
	// of the first token, until the old key is retired.
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		calls    atomic.Int64
		failures atomic.Int64
	)
	call := func(tok string) {
		calls.Add(1)
		if st := apiStatus(proxy.URL, tok); st != 200 {
			failures.Add(1)
			t.Errorf("/api/me refused a live token (kid %s): %d", kidOf(t, tok), st)
		}
	}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, err := cli.Token(ctx)
				if err != nil {
					failures.Add(1)
					t.Errorf("Token during the rotation: %v", err)
					continue
				}
				call(tok.AccessToken)
				call(first.AccessToken)
			}
		})
	}

	// 1. Publish the new key; the old one still signs. Wait until every
	// replica serves it.
	writeKeyFile(t, keys, "2026-06")
	writeActive(t, keys, "2026-01")
	waitJWKS(t, replicas, func(kids []string) bool { return slices.Contains(kids, "2026-06") })

	// 2. Switch signing. The CLI refreshes (its clock jumps into the
	// refresh window) until it holds a token of the new key, which it has
	// verified against the JWKS.
	writeActive(t, keys, "2026-06")
	offset.Store(int64(50 * time.Minute))
	deadline := time.Now().Add(30 * time.Second)
	for {
		tok, err := cli.Token(ctx)
		if err != nil {
			t.Fatalf("Token while switching keys: %v", err)
		}
		if kidOf(t, tok.AccessToken) == "2026-06" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no token of the new key 30 s after the switch")
		}
		time.Sleep(50 * time.Millisecond)
	}
	offset.Store(0)
	for n, end := calls.Load(), time.Now().Add(30*time.Second); calls.Load() < n+20 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond) // a few more calls with the new token
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the rotation", failures.Load(), calls.Load())
	}
	select {
	case err := <-refreshes:
		t.Fatalf("a refresh failed during the rotation: %v", err)
	default:
	}

	// 3. Retire the old key (its tokens have expired, in a real rotation).
	os.Remove(filepath.Join(keys, "2026-01.pem"))
	waitJWKS(t, replicas, func(kids []string) bool { return !slices.Contains(kids, "2026-01") })
	now, err := cli.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // both replicas
		if st := apiStatus(proxy.URL, now.AccessToken); st != 200 {
			t.Fatalf("token of the new key after the old one was retired: %d", st)
		}
		if st := apiStatus(proxy.URL, first.AccessToken); st != 401 {
			t.Fatalf("token of the retired key: %d", st)
		}
	}
}

// A key directory that stops loading (here: the active key's file is gone)
// leaves the replica signing and verifying with the keys it had.
func TestBackendKeepsKeysWhenTheDirectoryBreaks(t *testing.T) {
	keys := t.TempDir()
	writeKeyFile(t, keys, "a")
	addr := freeAddr(t)
	issuer, _ := startRun(t, "-addr", addr, "-data", t.TempDir(), "-keys", keys, "-keys-reload", "50ms")
	conf, tok := thirdPartyLogin(t, issuer, "ada@example.com")
	// Every state the reloads can see on the way is refused: a, b and c
	// with no "active" file, then b and c with none (a lone b would be
	// taken as the active key).
	writeKeyFile(t, keys, "b")
	writeKeyFile(t, keys, "c")
	os.Remove(filepath.Join(keys, "a.pem"))
	time.Sleep(300 * time.Millisecond)
	// (The JWKS also holds the ID-token key, which is not in -keys here.)
	if kids := jwksOf(t, "http://"+addr); !slices.Contains(kids, "a") || slices.Contains(kids, "b") || slices.Contains(kids, "c") {
		t.Fatalf("JWKS after a broken reload: %v", kids)
	}
	fresh := refresh(t, conf, tok)
	if kidOf(t, fresh.AccessToken) != "a" || apiStatus(issuer, fresh.AccessToken) != 200 {
		t.Fatal("the replica stopped signing with its key")
	}
	// A directory that is broken at startup is an error, not a fresh key.
	if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-keys", keys}, io.Discard); err == nil || !strings.Contains(err.Error(), "active") {
		t.Fatalf("start with a broken key directory: %v", err)
	}
}

func writeKeyFile(t *testing.T, dir, kid string) {
	t.Helper()
	k, err := server.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	writeAtomic(t, filepath.Join(dir, kid+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeActive(t *testing.T, dir, kid string) {
	t.Helper()
	writeAtomic(t, filepath.Join(dir, server.ActiveKeysFile), []byte(kid+"\n"))
}

// writeAtomic writes a file the way a deployment should: beside the target,
// then renamed over it, so a reload never reads half a file.
func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func kidOf(t *testing.T, tok string) string {
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Errorf("not a JWT: %v", err)
		return ""
	}
	kid, _ := p.Header["kid"].(string)
	return kid
}

func apiStatus(base, tok string) int {
	req, _ := http.NewRequest("GET", base+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func jwksOf(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + server.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// waitJWKS waits until every replica's JWKS satisfies ok (30 s at most: a
// hang guard, the reload interval is 100 ms).
func waitJWKS(t *testing.T, replicas []string, ok func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range replicas {
		for !ok(jwksOf(t, "http://"+addr)) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s: JWKS %v after 30 s", addr, jwksOf(t, "http://"+addr))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// browse plays the user's browser for one login: the dev sign-in page, the
// consent page, and the redirect to the CLI's loopback listener. It may
// run on any goroutine.
func browse(authURL, email string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	p, err := fetch(c, "GET", authURL, nil)
	if err != nil {
		return err
	}
	if p, err = post(c, p, url.Values{"email": {email}}); err != nil {
		return err
	}
	if !strings.Contains(p.body, "Authorize") {
		return fmt.Errorf("no consent page after sign-in at %s", p.url)
	}
	_, err = post(c, p, url.Values{"decision": {"authorize"}})
	return err
}

func post(c *http.Client, p page, fields url.Values) (page, error) {
	a := actionRE.FindStringSubmatch(p.body)
	if a == nil {
		return page{}, fmt.Errorf("no form on %s", p.url)
	}
	action, err := p.url.Parse(html.UnescapeString(a[1]))
	if err != nil {
		return page{}, err
	}
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		fields.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	return fetch(c, "POST", action.String(), fields)
}

func fetch(c *http.Client, method, u string, form url.Values) (page, error) {
	var (
		resp *http.Response
		err  error
	)
	if method == "POST" {
		resp, err = c.PostForm(u, form)
	} else {
		resp, err = c.Get(u)
	}
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return page{}, errors.New(method + " " + resp.Request.URL.Path + ": " + resp.Status)
	}
	return page{resp.Request.URL, string(b)}, nil
}
