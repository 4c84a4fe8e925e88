package boltstate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
)

// fileState writes a FileStateStore file holding entries with the given
// TTLs, as the old examples/backend left it, and returns its content.
func fileState(t *testing.T, path string, clk *clock, ttls map[string]time.Duration) []byte {
	t.Helper()
	fs, err := server.NewFileStateStore(server.FileStateConfig{Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for k, ttl := range ttls {
		if err := fs.Put(context.Background(), k, []byte("value of "+k), ttl); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMigrateFileStateKeepsRemainingTTLs(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "state.json")
	fileState(t, jsonPath, clk, map[string]time.Duration{"hour": time.Hour, "minute": time.Minute, "expired": time.Second})
	clk.Advance(10 * time.Second)

	s := open(t, boltstate.Config{Path: filepath.Join(dir, "state.db"), Now: clk.Now})
	n, err := boltstate.MigrateFileState(ctx, s, jsonPath)
	if err != nil || n != 2 {
		t.Fatalf("MigrateFileState = %d, %v; want 2 entries moved", n, err)
	}
	if _, err := os.Stat(jsonPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the migrated file is still there (%v)", err)
	}
	for _, k := range []string{"hour", "minute"} {
		if v, err := s.Get(ctx, k); err != nil || string(v) != "value of "+k {
			t.Fatalf("after migration, Get(%s) = %q, %v", k, v, err)
		}
	}
	if _, err := s.Get(ctx, "expired"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("an entry expired in the file came back: %v", err)
	}
	// The remaining TTL, not a new full one: "minute" had 50 s left.
	clk.Advance(51 * time.Second)
	if _, err := s.Get(ctx, "minute"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("'minute' outlived its remaining TTL: %v", err)
	}
	if _, err := s.Get(ctx, "hour"); err != nil {
		t.Fatalf("'hour' expired early: %v", err)
	}
	// No file: nothing to do.
	if n, err := boltstate.MigrateFileState(ctx, s, jsonPath); err != nil || n != 0 {
		t.Fatalf("MigrateFileState without a file = %d, %v; want 0, nil", n, err)
	}
}

// TestMigrateFileStateFinishesAfterACrash: the entries were committed but
// the process died before deleting the file. The next run deletes it and
// brings back nothing the store has used since.
func TestMigrateFileStateFinishesAfterACrash(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "state.json")
	content := fileState(t, jsonPath, clk, map[string]time.Duration{"code": time.Hour, "rt": time.Hour})
	s := open(t, boltstate.Config{Path: filepath.Join(dir, "state.db"), Now: clk.Now})
	if _, err := boltstate.MigrateFileState(ctx, s, jsonPath); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, "code"); err != nil { // used after the migration
		t.Fatal(err)
	}
	if err := os.WriteFile(jsonPath, content, 0o600); err != nil { // "the removal never happened"
		t.Fatal(err)
	}
	n, err := boltstate.MigrateFileState(ctx, s, jsonPath)
	if err != nil || n != 0 {
		t.Fatalf("second MigrateFileState = %d, %v; want 0, nil", n, err)
	}
	if _, err := os.Stat(jsonPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the migrated file is still there (%v)", err)
	}
	if _, err := s.Get(ctx, "code"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("a used code came back from the old file: %v", err)
	}
}

func TestMigrateFileStateRefusesWhenBothHoldLogins(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "state.json")
	content := fileState(t, jsonPath, clk, map[string]time.Duration{"old": time.Hour})
	s := open(t, boltstate.Config{Path: filepath.Join(dir, "state.db"), Now: clk.Now})
	if err := s.Put(ctx, "new", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := boltstate.MigrateFileState(ctx, s, jsonPath)
	if !errors.Is(err, boltstate.ErrConflict) || !strings.Contains(err.Error(), "move "+jsonPath+" away") {
		t.Fatalf("MigrateFileState = %v; want ErrConflict saying what to move", err)
	}
	if b, err := os.ReadFile(jsonPath); err != nil || string(b) != string(content) {
		t.Fatalf("the refused file changed: %v", err)
	}
	if _, err := s.Get(ctx, "old"); !errors.Is(err, server.ErrStateNotFound) {
		t.Fatalf("a refused migration imported entries: %v", err)
	}
}

func TestMigrateFileStateRefusesADamagedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "state.json")
	if err := os.WriteFile(jsonPath, []byte(`{"version":1,"entries":{`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, boltstate.Config{Path: filepath.Join(dir, "state.db")})
	if _, err := boltstate.MigrateFileState(ctx, s, jsonPath); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("MigrateFileState of a damaged file: %v; want an error saying it is damaged", err)
	}
	if _, err := os.Stat(jsonPath); err != nil {
		t.Fatalf("the damaged file was removed: %v", err)
	}
}
