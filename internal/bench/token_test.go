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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
	"github.com/keyloop/keyloop/server/redisstate"
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

func memoryConfig() stateConfig {
	return stateConfig{"memory", func(testing.TB) server.StateStore { return server.NewMemoryStateStore() }}
}

// redisConfig is server/redisstate on a redis-server of its own (unix
// socket, persistence off), started by the benchmark.
func redisConfig() stateConfig {
	return stateConfig{"redis", func(tb testing.TB) server.StateStore {
		r := testenv.Redis(tb)
		rs, err := redisstate.Open(r.URL, redisstate.Options{Prefix: "bench:"})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { rs.Close() })
		return rs
	}}
}

// stateConfigs returns the state stores BenchmarkTokenEndpoint measures:
// all of them, or those whose names start with one of the comma-separated
// prefixes in $KEYLOOP_BENCH_STATES ("bolt-0k,bolt-100k"), to measure one
// change quickly (KEYLOOP_BENCH_STATES=bolt-0k scripts/bench ./internal/bench).
// The in-memory store always runs: the others' ratios are against it.
func stateConfigs() []stateConfig {
	cs := []stateConfig{memoryConfig()}
	for _, live := range []int{0, 10_000, 100_000} {
		cs = append(cs, stateConfig{fmt.Sprintf("bolt-%dk-live", live/1000), func(tb testing.TB) server.StateStore { return openBolt(tb, live) }})
	}
	// Without redis-server the other figures are still worth having
	// (testenv.Redis would skip them all); in CI it is installed.
	if _, err := exec.LookPath("redis-server"); err == nil || testenv.InCI() {
		cs = append(cs, redisConfig())
	}
	only := os.Getenv("KEYLOOP_BENCH_STATES")
	if only == "" {
		return cs
	}
	return slices.DeleteFunc(cs, func(c stateConfig) bool {
		if c.name == "memory" {
			return false
		}
		for _, p := range strings.Split(only, ",") {
			if p != "" && strings.HasPrefix(c.name, p) {
				return false
			}
		}
		return true
	})
}

// loadRounds is how many rounds BenchmarkTokenEndpoint splits each load
// into: every configuration runs once per round, in turn, so that a change
// in the machine's load during the run weighs on all of them alike.
const loadRounds = 5

// tokenLoad is one configuration's load: its server, and what its rounds
// measured.
type tokenLoad struct {
	name   string
	spec   Spec // Requests: per round
	res    Result
	lat    []float64
	allocs float64 // server allocations, over all rounds
}

func (l *tokenLoad) rps() float64 { return float64(l.res.Requests) / l.res.Seconds }

func (l *tokenLoad) p99() float64 {
	slices.Sort(l.lat)
	return l.lat[min(len(l.lat)-1, len(l.lat)*99/100)]
}

// BenchmarkTokenEndpoint measures the token endpoint under load from a
// second process (loadConns connections, loadRequests requests per
// configuration): code exchanges and refreshes on each state store, and a
// trivial handler answering a fixed token response to the same requests
// (the baseline), in loadRounds interleaved rounds. It reports requests/s,
// p99 latency (ms), server allocations per request, and ratios: x-fixed
// (requests/s over the trivial handler's), x-memory (over the in-memory
// store's, same grant), x-flat (boltstate with live logins over boltstate
// with none).
//
// The loads run once, whatever b.N; ns/op is 1 s over requests/s.
func BenchmarkTokenEndpoint(b *testing.B) {
	per := max(loadConns, loadRequests()/loadRounds)
	loads := []*tokenLoad{{name: "fixed", spec: Spec{Issuer: serve(b, fixedHandler), Mode: ModeFixed, Conns: loadConns, Requests: per}}}
	for _, c := range stateConfigs() {
		state := c.open(b)
		issuer := serve(b, backend(b, state))
		for _, mode := range []string{ModeExchange, ModeRefresh} {
			loads = append(loads, &tokenLoad{name: c.name + "/" + mode, spec: Spec{Issuer: issuer, Mode: mode, Conns: loadConns, Requests: per}})
		}
	}
	for range loadRounds {
		for _, l := range loads {
			res, allocs := load(b, l.spec)
			l.res.Requests += res.Requests
			l.res.Seconds += res.Seconds
			l.lat = append(l.lat, res.LatenciesMs...)
			l.allocs += allocs * float64(res.Requests)
		}
	}
	byName := map[string]*tokenLoad{}
	for _, l := range loads {
		byName[l.name] = l
	}
	for _, l := range loads {
		b.Run(l.name, func(b *testing.B) {
			rps := l.rps()
			b.ReportMetric(1e9/rps, "ns/op")
			b.ReportMetric(rps, "req/s")
			b.ReportMetric(l.p99(), "p99-ms")
			b.ReportMetric(l.allocs/float64(l.res.Requests), "allocs/req")
			if l.name == "fixed" {
				return
			}
			b.ReportMetric(rps/byName["fixed"].rps(), "x-fixed")
			store, grant, _ := strings.Cut(l.name, "/")
			if store != "memory" {
				b.ReportMetric(rps/byName["memory/"+grant].rps(), "x-memory")
			}
			if zero := byName["bolt-0k-live/"+grant]; strings.HasPrefix(store, "bolt") && store != "bolt-0k-live" && zero != nil {
				b.ReportMetric(rps/zero.rps(), "x-flat")
			}
		})
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
		memoryConfig(),
		{"bolt with live logins", func(tb testing.TB) server.StateStore { return openBolt(tb, 10) }},
		redisConfig(),
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
