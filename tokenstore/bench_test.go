package tokenstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/zalando/go-keyring"
)

// tokenValue is the size of a typical stored Record.
var tokenValue = []byte(strings.Repeat("x", 1500))

// BenchmarkFileSave measures an atomic, durable File.Save, and reports its
// cost relative to a plain os.WriteFile of the same bytes measured in the
// same run (x-writefile).
func BenchmarkFileSave(b *testing.B) {
	dir := b.TempDir()
	f, err := NewFile(FileConfig{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	start := time.Now()
	for b.Loop() {
		if err := f.Save(ctx, "k", tokenValue); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	base := baselineWriteFile(b, filepath.Join(dir, "plain"), b.N)
	b.ReportMetric(float64(per)/float64(base), "x-writefile")
}

// BenchmarkWriteFileBaseline is the baseline on its own: os.WriteFile,
// neither atomic nor synced.
func BenchmarkWriteFileBaseline(b *testing.B) {
	path := filepath.Join(b.TempDir(), "plain")
	for b.Loop() {
		if err := os.WriteFile(path, tokenValue, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

func baselineWriteFile(b *testing.B, path string, n int) time.Duration {
	start := time.Now()
	for range n {
		if err := os.WriteFile(path, tokenValue, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkFileLoad measures File.Load with its checksum check.
func BenchmarkFileLoad(b *testing.B) {
	f, _ := NewFile(FileConfig{Dir: b.TempDir()})
	if err := f.Save(b.Context(), "k", tokenValue); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := f.Load(b.Context(), "k"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeychainLoadChunked measures loading an 8 KiB value stored in
// Windows-sized chunks (4 entries) from the real keyring, and reports it
// relative to loading the same value from one entry, measured in the same
// run (x-inline).
func BenchmarkKeychainLoadChunked(b *testing.B) {
	testenv.RequireKeychain(b)
	service := "keyloop-tokenstore-bench-" + testenv.RandomString(4)
	b.Cleanup(func() { _ = keyring.DeleteAll(service) })
	value := []byte(strings.Repeat("y", 8<<10))
	chunked, _ := NewKeychain(KeychainConfig{Service: service, ChunkSize: 2560})
	inline, _ := NewKeychain(KeychainConfig{Service: service, ChunkSize: 64 << 10})
	ctx := b.Context()
	if err := chunked.Save(ctx, "chunked", value); err != nil {
		b.Fatal(err)
	}
	if err := inline.Save(ctx, "inline", value); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		if _, err := chunked.Load(ctx, "chunked"); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	start = time.Now()
	for range b.N {
		if _, err := inline.Load(ctx, "inline"); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(base), "x-inline")
}
