package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

func TestFileStateStoreKeepsStateAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	path := filepath.Join(t.TempDir(), "data", "state.json")
	open := func() *server.FileStateStore {
		t.Helper()
		s, err := server.NewFileStateStore(server.FileStateConfig{Path: path, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
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
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v; want 0700", st.Mode().Perm())
	}

	clock.Advance(2 * time.Minute) // "short" expires while the backend is down
	s = open()
	if v, err := s.Get(ctx, "long"); err != nil || string(v) != "value of long" {
		t.Fatalf("after a restart, Get(long) = %q, %v", v, err)
	}
	for _, k := range []string{"short", "taken", "deleted"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, server.ErrStateNotFound) {
			t.Errorf("after a restart, Get(%s): %v; want ErrStateNotFound", k, err)
		}
	}
}

func TestFileStateStoreTakeIsExclusive(t *testing.T) {
	ctx := context.Background()
	s, err := server.NewFileStateStore(server.FileStateConfig{Path: filepath.Join(t.TempDir(), "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "code", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Take(ctx, "code"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent Takes got the value; want exactly 1", wins)
	}
}

func TestFileStateStoreRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"damaged":         {`{"version":1,"entries":{`, 0o600},
		"newer version":   {`{"version":2,"entries":{}}`, 0o600},
		"readable by all": {`{"version":1,"entries":{}}`, 0o644},
	} {
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := server.NewFileStateStore(server.FileStateConfig{Path: path}); err == nil {
			t.Errorf("%s state file accepted", name)
		}
	}
	if _, err := server.NewFileStateStore(server.FileStateConfig{}); !errors.Is(err, server.ErrInvalidConfig) {
		t.Errorf("empty Path: %v; want ErrInvalidConfig", err)
	}
}
