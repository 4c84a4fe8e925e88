package clilogin

import (
	"context"
	"testing"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

// benchClient returns a Client with a valid, not-yet-due login in a Memory
// store, without a server.
func benchClient(b *testing.B) (*Client, *tokenstore.Memory) {
	store := tokenstore.NewMemory()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c, err := New(Config{Issuer: "https://auth.example", ClientID: "mytool", AppName: "mytool", Store: store,
		Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	rec := &tokenstore.Record{AccessToken: "at", RefreshToken: "rt", IssuedAt: now, Expiry: now.Add(time.Hour),
		Issuer: "https://auth.example", ClientID: "mytool", TokenEndpoint: "https://auth.example/token"}
	v, err := tokenstore.MarshalRecord(rec)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Save(context.Background(), c.key, v); err != nil {
		b.Fatal(err)
	}
	return c, store
}

// BenchmarkToken is a Token call for a stored token outside its refresh
// window, after the first call cached it. Compare with
// BenchmarkTokenBaselineStoreLoad.
func BenchmarkToken(b *testing.B) {
	c, _ := benchClient(b)
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenBaselineStoreLoad is the baseline: one Load of the record
// from the in-memory store plus decoding it, what Token would cost without
// its cache (a keychain Load costs ≈ 4 ms more).
func BenchmarkTokenBaselineStoreLoad(b *testing.B) {
	c, store := benchClient(b)
	ctx := context.Background()
	for b.Loop() {
		v, err := store.Load(ctx, c.key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tokenstore.UnmarshalRecord(v); err != nil {
			b.Fatal(err)
		}
	}
}
