package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
)

func TestMain(m *testing.M) {
	MainIfChild()
	code := m.Run()
	if populatedDir != "" {
		os.RemoveAll(populatedDir)
	}
	os.Exit(code)
}

// loadConns is the number of connections of every load run.
const loadConns = 50

// loadRequests is the number of measured requests per load run:
// $KEYLOOP_BENCH_REQUESTS, default 10000.
func loadRequests() int {
	if n, err := strconv.Atoi(os.Getenv("KEYLOOP_BENCH_REQUESTS")); err == nil && n >= loadConns {
		return n
	}
	return 10000
}

// serve starts an HTTP server on a kernel-chosen loopback port for the
// handler that mk builds from the server's URL, and returns the URL.
func serve(tb testing.TB, mk func(issuer string) http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	srv := &http.Server{Handler: mk(issuer), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return issuer
}

// fixedBody is the baseline's answer: a token response of the size ours
// has (an EdDSA JWT of ~500 bytes, a refresh token, the rest).
var fixedBody = []byte(`{"access_token":"` + strings.Repeat("x", 480) +
	`","token_type":"Bearer","expires_in":604800,"refresh_token":"` + strings.Repeat("r", 43) + `"}` + "\n")

// fixedHandler is the baseline: it reads the request and answers fixedBody
// with the token endpoint's headers.
func fixedHandler(string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.Write(fixedBody)
	})
}

// fixedAuth signs every browser user in as one identity, without a page.
type fixedAuth struct{}

func (fixedAuth) Authenticate(http.ResponseWriter, *http.Request, server.SignInPrompt) (*server.Identity, error) {
	return &server.Identity{Subject: "bench|0123456789", Email: "ada@example.com", Name: "Ada Lovelace"}, nil
}

// backend returns a func building keyloop's handler on state, with a
// self-signed Ed25519 minter and no logging (the defaults).
func backend(tb testing.TB, state server.StateStore) func(string) http.Handler {
	return func(issuer string) http.Handler {
		key, err := server.GenerateKey()
		if err != nil {
			tb.Fatal(err)
		}
		m, err := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
		if err != nil {
			tb.Fatal(err)
		}
		h, err := server.New(server.Config{Issuer: issuer, Clients: []server.Client{{ID: "mytool", Name: "mytool"}},
			Authenticator: fixedAuth{}, Minter: m, State: state})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h.Close() })
		return h
	}
}

// load runs spec in a second process (this test binary, re-executed) and
// returns its result and the server process's allocations per measured
// request.
func load(tb testing.TB, spec Spec) (*Result, float64) {
	tb.Helper()
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(raw))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	wait := func() { once.Do(func() { stdin.Close(); cmd.Wait() }) }
	tb.Cleanup(func() { cmd.Process.Kill(); wait() })
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		wait()
		tb.Fatalf("load generator (%s): %q %v: %s", spec.Mode, line, err, stderr.String())
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	io.WriteString(stdin, "go\n")
	var res Result
	err = json.NewDecoder(out).Decode(&res)
	runtime.ReadMemStats(&after)
	wait()
	if err != nil {
		tb.Fatalf("load generator (%s): %v: %s", spec.Mode, err, stderr.String())
	}
	if res.Errors > 0 {
		tb.Fatalf("load generator (%s): %d of %d requests failed; first: %s", spec.Mode, res.Errors, res.Requests, res.FirstError)
	}
	return &res, float64(after.Mallocs-before.Mallocs) / float64(res.Requests)
}

// liveLogins returns n logins' worth of state entries (a refresh record
// and its reuse marker each), shaped like the entries a real login
// leaves, expiring in 30 days.
func liveLogins(tb testing.TB, n int) []boltstate.Entry {
	tb.Helper()
	rec := &recorder{StateStore: server.NewMemoryStateStore(), last: map[string][]byte{}}
	issuer := serve(tb, backend(tb, rec))
	if _, err := Run(context.Background(), Spec{Issuer: issuer, Mode: ModeRefresh, Conns: 1, Requests: 1}, func() {}); err != nil {
		tb.Fatal(err)
	}
	rt, known := rec.last["keyloop:rt:"], rec.last["keyloop:rt-known:"]
	if rt == nil || known == nil {
		tb.Fatal("a login left no refresh token entries; the key names changed?")
	}
	exp := time.Now().Add(30 * 24 * time.Hour)
	out := make([]boltstate.Entry, 0, 2*n)
	for range n {
		h := randomString()
		out = append(out, boltstate.Entry{Key: "keyloop:rt:" + h, Value: rt, Expires: exp},
			boltstate.Entry{Key: "keyloop:rt-known:" + h, Value: known, Expires: exp})
	}
	return out
}

// recorder keeps the last value Put under each key prefix.
type recorder struct {
	server.StateStore
	mu   sync.Mutex
	last map[string][]byte
}

func (r *recorder) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if i := strings.LastIndexByte(key, ':'); i >= 0 {
		r.mu.Lock()
		r.last[key[:i+1]] = append([]byte{}, value...)
		r.mu.Unlock()
	}
	return r.StateStore.Put(ctx, key, value, ttl)
}

// openBolt opens a boltstate store in a temp dir holding live logins.
func openBolt(tb testing.TB, live int) *boltstate.Store {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "state.db")
	if live > 0 {
		// The copy is flushed to disk first, as a server's file would
		// be: else the first commit's fdatasync writes the whole file.
		if err := copyFileSynced(populated(tb, live), path); err != nil {
			tb.Fatal(err)
		}
	}
	s, err := boltstate.Open(boltstate.Config{Path: path})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func copyFileSynced(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// populatedFiles are boltstate files holding live logins, by number of
// logins, made once per process (filling one takes seconds) and copied.
var (
	populatedMu    sync.Mutex
	populatedFiles = map[int]string{}
	populatedDir   string
)

func populated(tb testing.TB, live int) string {
	populatedMu.Lock()
	defer populatedMu.Unlock()
	if p, ok := populatedFiles[live]; ok {
		return p
	}
	if populatedDir == "" {
		d, err := os.MkdirTemp("", "keyloop-bench-")
		if err != nil {
			tb.Fatal(err)
		}
		populatedDir = d
	}
	p := filepath.Join(populatedDir, fmt.Sprintf("live-%d.db", live))
	s, err := boltstate.Open(boltstate.Config{Path: p, SweepInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	err = s.Import(context.Background(), liveLogins(tb, live))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	populatedFiles[live] = p
	return p
}

// stateConfig is one state store the token endpoint is measured on.
type stateConfig struct {
	name string
	open func(testing.TB) server.StateStore
}

func stateConfigs() []stateConfig {
	cs := []stateConfig{{"memory", func(testing.TB) server.StateStore { return server.NewMemoryStateStore() }}}
	for _, live := range []int{0, 10_000, 100_000} {
		cs = append(cs, stateConfig{fmt.Sprintf("bolt-%dk-live", live/1000), func(tb testing.TB) server.StateStore { return openBolt(tb, live) }})
	}
	return cs
}

// BenchmarkTokenEndpoint measures the token endpoint under load from a
// second process (loadConns connections, loadRequests requests per run):
// code exchanges and refreshes on each state store, against a trivial
// handler answering a fixed token response to the same requests, all in
// this run. It reports requests/s, p99 latency (ms), server allocations
// per request, and ratios: x-fixed (requests/s over the trivial
// handler's), x-memory (over the in-memory store's, same grant), x-flat
// (boltstate with live logins over boltstate with none).
//
// Each sub-benchmark runs its load once, whatever b.N; ns/op is 1 s over
// requests/s.
func BenchmarkTokenEndpoint(b *testing.B) {
	n := loadRequests()
	results := map[string]float64{}
	var mu sync.Mutex
	measure := func(name string, spec func(testing.TB) Spec) {
		b.Run(name, func(b *testing.B) {
			mu.Lock()
			rps, done := results[name]
			mu.Unlock()
			if !done {
				res, allocs := load(b, spec(b))
				rps = res.PerSecond()
				mu.Lock()
				results[name] = rps
				results[name+"/p99"] = res.P99ms
				results[name+"/allocs"] = allocs
				mu.Unlock()
			}
			b.ReportMetric(1e9/rps, "ns/op")
			b.ReportMetric(rps, "req/s")
			b.ReportMetric(results[name+"/p99"], "p99-ms")
			b.ReportMetric(results[name+"/allocs"], "allocs/req")
			if f := results["fixed"]; f > 0 && name != "fixed" {
				b.ReportMetric(rps/f, "x-fixed")
			}
			grant := name[strings.LastIndexByte(name, '/')+1:]
			if m := results["memory/"+grant]; m > 0 && strings.HasPrefix(name, "bolt") {
				b.ReportMetric(rps/m, "x-memory")
			}
			if z := results["bolt-0k-live/"+grant]; z > 0 && strings.HasPrefix(name, "bolt") && !strings.HasPrefix(name, "bolt-0k") {
				b.ReportMetric(rps/z, "x-flat")
			}
		})
	}
	measure("fixed", func(tb testing.TB) Spec {
		return Spec{Issuer: serve(tb, fixedHandler), Mode: ModeFixed, Conns: loadConns, Requests: n}
	})
	for _, c := range stateConfigs() {
		for _, mode := range []string{ModeExchange, ModeRefresh} {
			measure(c.name+"/"+mode, func(tb testing.TB) Spec {
				return Spec{Issuer: serve(tb, backend(tb, c.open(tb))), Mode: mode, Conns: loadConns, Requests: n}
			})
		}
	}
}

// TestLoadHarness runs every load of BenchmarkTokenEndpoint once, tiny, so
// the harness cannot rot: a second process, the real consent flow, code
// exchanges and refreshes on each store.
func TestLoadHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	res, _ := load(t, Spec{Issuer: serve(t, fixedHandler), Mode: ModeFixed, Conns: 2, Requests: 4})
	if res.Requests != 4 {
		t.Fatalf("fixed: %+v", res)
	}
	for _, c := range []stateConfig{
		{"memory", func(testing.TB) server.StateStore { return server.NewMemoryStateStore() }},
		{"bolt with live logins", func(tb testing.TB) server.StateStore { return openBolt(tb, 10) }},
	} {
		for _, mode := range []string{ModeExchange, ModeRefresh} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				res, allocs := load(t, Spec{Issuer: serve(t, backend(t, c.open(t))), Mode: mode, Conns: 2, Requests: 6})
				if res.Requests != 6 || res.Errors != 0 || res.P99ms <= 0 || allocs <= 0 {
					t.Fatalf("%+v, %.0f allocs/request", res, allocs)
				}
			})
		}
	}
}
