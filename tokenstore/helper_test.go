package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests re-execute their own binary to get fresh processes: godbus
// caches the session bus connection for the life of a process (and a hung
// connection attempt holds its lock forever), and some tests need a process
// to die at a chosen point or several processes to race.
const (
	helperEnv    = "KEYLOOP_TOKENSTORE_HELPER" // the scenario to run instead of the tests
	helperDirEnv = "KEYLOOP_TOKENSTORE_DIR"
	helperArgEnv = "KEYLOOP_TOKENSTORE_ARG"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	os.Exit(m.Run())
}

// helperResult is what a helper process reports on stdout, as JSON.
type helperResult struct {
	Ops  []opResult `json:"ops,omitempty"`
	Warn string     `json:"warn,omitempty"`
	Kind Kind       `json:"kind,omitempty"`
	Path string     `json:"path,omitempty"`
	Load string     `json:"load,omitempty"`
}

type opResult struct {
	Op          string `json:"op"`
	Err         string `json:"err,omitempty"`
	Unavailable bool   `json:"unavailable,omitempty"`
	Absent      bool   `json:"absent,omitempty"`
	NotFound    bool   `json:"not_found,omitempty"`
	Corrupt     bool   `json:"corrupt,omitempty"`
}

func newOp(op string, err error) opResult {
	r := opResult{Op: op, Unavailable: errors.Is(err, ErrKeychainUnavailable), Absent: errors.Is(err, ErrNoKeychain),
		NotFound: errors.Is(err, ErrNotFound), Corrupt: errors.Is(err, ErrCorrupt)}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

const helperService = "keyloop-tokenstore-test"

func runHelper(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir, arg := os.Getenv(helperDirEnv), os.Getenv(helperArgEnv)
	var res helperResult
	switch name {
	case "keychain": // every Keychain op against whatever bus the parent set up
		k, _ := NewKeychain(KeychainConfig{Service: helperService, Timeout: 500 * time.Millisecond})
		res.Ops = append(res.Ops, newOp("save", k.Save(ctx, "k", []byte("secret-value"))))
		_, err := k.Load(ctx, "k")
		res.Ops = append(res.Ops, newOp("load", err))
		res.Ops = append(res.Ops, newOp("delete", k.Delete(ctx, "k")))
	case "auto": // Open in ModeAuto: two saves, a load and a locate
		var warn strings.Builder
		s, err := Open(Options{App: "mytool", Dir: dir, Warn: &warn, KeychainTimeout: 500 * time.Millisecond})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		res.Ops = append(res.Ops, newOp("save", s.Save(ctx, "k", []byte("first"))))
		res.Ops = append(res.Ops, newOp("save", s.Save(ctx, "k", []byte(arg))))
		v, err := s.Load(ctx, "k")
		res.Load = string(v)
		res.Ops = append(res.Ops, newOp("load", err))
		_, err = s.Load(ctx, "other")
		res.Ops = append(res.Ops, newOp("load-missing", err))
		loc, err := s.(Locator).Locate(ctx, "k")
		res.Ops = append(res.Ops, newOp("locate", err))
		res.Kind, res.Path, res.Warn = loc.Kind, loc.Path, warn.String()
	case "keychain-only":
		s, _ := Open(Options{App: "mytool", Mode: ModeKeychainOnly, Dir: dir, KeychainTimeout: 500 * time.Millisecond})
		res.Ops = append(res.Ops, newOp("save", s.Save(ctx, "k", []byte("v"))))
		_, err := s.Load(ctx, "k")
		res.Ops = append(res.Ops, newOp("load", err))
	case "kill-before-rename": // dies by SIGKILL between writing the temp file and renaming it
		f, _ := NewFile(FileConfig{Dir: dir})
		fileTestHook = func(string) {
			p, _ := os.FindProcess(os.Getpid())
			_ = p.Kill()
			select {}
		}
		_ = f.Save(ctx, "k", []byte(arg))
		fmt.Fprintln(os.Stderr, "still alive after the kill hook")
		return 3
	case "hammer":
		if err := hammer(ctx, dir, arg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		return 2
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 2
	}
	return 0
}

// runHelperProcess runs scenario name in a fresh process with extra
// environment variables and returns its result. The process gets a deadline
// so a hang fails the test instead of stalling it.
func runHelperProcess(t *testing.T, name string, env ...string) helperResult {
	t.Helper()
	out, err := helperCmd(t, name, env...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("helper %s: %v\nstderr: %s", name, err, ee.Stderr)
		}
		t.Fatalf("helper %s: %v", name, err)
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper %s printed %q: %v", name, out, err)
	}
	return res
}

func helperCmd(t *testing.T, name string, env ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + name}, env...)...)
	return cmd
}

// startSilentSocket listens on a unix socket that accepts connections and
// never answers, like a wedged bus. It returns a D-Bus address for it.
func startSilentSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "silent")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
			close(done)
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return "unix:path=" + path
}

// hammer runs in each of several processes: it increments a counter kept in
// the store under the store's Locker, and reads the value without the lock
// in between, failing on any unreadable or torn value.
func hammer(ctx context.Context, dir, spec string) error {
	kind, nstr, _ := strings.Cut(spec, ":")
	n, _ := strconv.Atoi(nstr)
	var store Store
	var locker Locker
	file, err := NewFile(FileConfig{Dir: dir})
	if err != nil {
		return err
	}
	switch kind {
	case "file":
		store, locker = file, file
	case "keychain": // chunked values in the keychain, file lock
		store, err = NewKeychain(KeychainConfig{Service: helperService, ChunkSize: 300})
		if err != nil {
			return err
		}
		locker = file
	default:
		return fmt.Errorf("unknown hammer kind %q", kind)
	}
	const key = "hammer"
	for i := range n {
		unlock, err := locker.Lock(ctx, key)
		if err != nil {
			return err
		}
		count, err := readCounter(ctx, store, key)
		if err == nil {
			err = store.Save(ctx, key, counterValue(count+1, os.Getpid()))
		}
		unlock()
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		if _, err := readCounter(ctx, store, key); err != nil { // unlocked read
			return fmt.Errorf("round %d, unlocked read: %w", i, err)
		}
	}
	return nil
}

// counterValue is a value of about 1 KiB whose every line repeats the
// count, so a torn value is detected even where no checksum would be.
func counterValue(count, pid int) []byte {
	var b strings.Builder
	for range 16 {
		fmt.Fprintf(&b, "count=%08d pid=%08d %s\n", count, pid, strings.Repeat("x", 40))
	}
	return []byte(b.String())
}

func readCounter(ctx context.Context, s Store, key string) (int, error) {
	v, err := s.Load(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSuffix(string(v), "\n"), "\n")
	if len(lines) != 16 {
		return 0, fmt.Errorf("torn value: %d lines", len(lines))
	}
	for _, l := range lines[1:] {
		if l != lines[0] {
			return 0, errors.New("torn value: lines differ")
		}
	}
	var count, pid int
	if _, err := fmt.Sscanf(lines[0], "count=%d pid=%d", &count, &pid); err != nil {
		return 0, fmt.Errorf("torn value: %v", err)
	}
	return count, nil
}
