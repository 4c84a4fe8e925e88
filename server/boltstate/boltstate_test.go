package boltstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
	"github.com/keyloop/keyloop/server/statetest"
)

// clock is a settable clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func open(t *testing.T, cfg boltstate.Config) *boltstate.Store {
	t.Helper()
	s, err := boltstate.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestKeepsStateAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	path := filepath.Join(t.TempDir(), "data", "state.db")
	s := open(t, boltstate.Config{Path: path, Now: clk.Now})
	for k, ttl := range map[string]time.Duration{"long": time.Hour, "short": time.Minute, "taken": time.Hour, "deleted": time.Hour} {
		if err := s.Put(ctx, k, []byte("value of "+k), ttl); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Take(ctx, "taken"); err != nil || string(v) != "value of taken" {
		t.Fatalf("Take = %q, %v", v, err)
	}
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v; want 0700", st.Mode().Perm())
	}

	clk.Advance(2 * time.Minute) // "short" expires while the backend is down
	s = open(t, boltstate.Config{Path: path, Now: clk.Now})
	if v, err := s.Get(ctx, "long"); err != nil || string(v) != "value of long" {
		t.Fatalf("after a restart, Get(long) = %q, %v", v, err)
	}
	for _, k := range []string{"short", "taken", "deleted"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, server.ErrStateNotFound) {
			t.Errorf("after a restart, Get(%s): %v; want ErrStateNotFound", k, err)
		}
		if _, err := s.Take(ctx, k); !errors.Is(err, server.ErrStateNotFound) {
			t.Errorf("after a restart, Take(%s): %v; want ErrStateNotFound", k, err)
		}
	}
	if n, err := s.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len = %d, %v; want 1", n, err)
	}
}

func TestRefusesFilesItCannotUse(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared.db")
	s := open(t, boltstate.Config{Path: shared})
	s.Close()
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	newer := filepath.Join(dir, "newer.db")
	db, err := bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists([]byte("meta"))
		return b.Put([]byte("version"), []byte("2"))
	})
	db.Close()
	for name, tc := range map[string]struct{ path, want string }{
		"damaged":         {garbage, "cannot be opened"},
		"readable by all": {shared, "chmod 600"},
		"newer version":   {newer, `format version "2"`},
	} {
		_, err := boltstate.Open(boltstate.Config{Path: tc.path})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s state file: %v; want an error naming the file and saying %q", name, err, tc.want)
		}
	}
	if _, err := boltstate.Open(boltstate.Config{}); !errors.Is(err, server.ErrInvalidConfig) {
		t.Errorf("empty Path: %v; want ErrInvalidConfig", err)
	}
}

func TestSecondOpenerIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, boltstate.Config{Path: path})
	_, err := boltstate.Open(boltstate.Config{Path: path, LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v; want 'in use by another process'", err)
	}
}

func TestClosedStoreSaysSo(t *testing.T) {
	ctx := context.Background()
	s := open(t, boltstate.Config{Path: filepath.Join(t.TempDir(), "state.db")})
	if err := s.Put(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, boltstate.ErrClosed) || !errors.Is(err, server.ErrStateUnavailable) {
		t.Errorf("Get after Close: %v; want ErrClosed, a server.ErrStateUnavailable", err)
	}
	if _, err := s.Take(ctx, "k"); !errors.Is(err, boltstate.ErrClosed) {
		t.Errorf("Take after Close: %v; want ErrClosed", err)
	}
	if err := s.Put(ctx, "k", nil, time.Hour); !errors.Is(err, boltstate.ErrClosed) {
		t.Errorf("Put after Close: %v; want ErrClosed", err)
	}
}

func TestDoneContextChangesNothing(t *testing.T) {
	s := open(t, boltstate.Config{Path: filepath.Join(t.TempDir(), "state.db")})
	if err := s.Put(context.Background(), "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Take(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Take with a canceled ctx: %v; want context.Canceled", err)
	}
	if err := s.Put(ctx, "k", []byte("other"), time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled ctx: %v; want context.Canceled", err)
	}
	if v, err := s.Get(context.Background(), "k"); err != nil || string(v) != "v" {
		t.Errorf("after canceled calls, Get = %q, %v; want the value unchanged", v, err)
	}
}

// TestSurvivesKill kills a process that is writing (SIGKILL, no chance to
// close the file) and checks that every change it had been told was stored
// is there, and that the file is consistent.
func TestSurvivesKill(t *testing.T) {
	if os.Getenv("BOLTSTATE_WRITER") != "" {
		return // the child's part runs from TestMain
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOLTSTATE_WRITER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	acked := 0
	for sc.Scan() && acked < 300 {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked = n + 1
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("the writer acknowledged only %d changes", acked)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("after a kill, the file does not open: %v", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatalf("after a kill, the file is inconsistent: %v", err)
	}
	s := open(t, boltstate.Config{Path: path})
	ctx := context.Background()
	for i := range acked {
		// The writer replaced "k<i>" and took "t<i>" before acknowledging i.
		if v, err := s.Get(ctx, fmt.Sprintf("k%d", i)); err != nil || string(v) != fmt.Sprintf("second %d", i) {
			t.Fatalf("change %d was acknowledged, but after a kill Get = %q, %v", i, v, err)
		}
		if _, err := s.Get(ctx, fmt.Sprintf("t%d", i)); !errors.Is(err, server.ErrStateNotFound) {
			t.Fatalf("Take %d was acknowledged, but after a kill the entry is back (%v)", i, err)
		}
	}
}

func TestMain(m *testing.M) {
	if path := os.Getenv("BOLTSTATE_WRITER"); path != "" {
		writeUntilKilled(path)
		return
	}
	os.Exit(m.Run())
}

// writeUntilKilled changes entries in a loop, from 4 goroutines so commits
// are shared, printing the number of each change once it has returned.
func writeUntilKilled(path string) {
	s, err := boltstate.Open(boltstate.Config{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx := context.Background()
	acks := make(chan int)
	var next atomic.Int64
	for range 4 {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				k, tk := fmt.Sprintf("k%d", i), fmt.Sprintf("t%d", i)
				for _, err := range []error{
					s.Put(ctx, k, []byte(fmt.Sprintf("first %d", i)), time.Hour),
					s.Put(ctx, tk, []byte("to take"), time.Hour),
					s.Put(ctx, k, []byte(fmt.Sprintf("second %d", i)), time.Hour),
				} {
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
				}
				if _, err := s.Take(ctx, tk); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				acks <- i
			}
		}()
	}
	// Acknowledge in order: i is printed once 0…i have all returned.
	done := map[int]bool{}
	printed := 0
	for i := range acks {
		done[i] = true
		for done[printed] {
			fmt.Println(printed)
			printed++
		}
	}
}

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) server.StateStore {
		return open(t, boltstate.Config{Path: filepath.Join(t.TempDir(), "state.db"), SweepInterval: 100 * time.Millisecond})
	})
}
