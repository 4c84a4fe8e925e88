package tokenstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/keyloop/keyloop/tokenstore"
)

func ExampleNewMemory() {
	ctx := context.Background()
	store := tokenstore.NewMemory()
	key := tokenstore.Key("", "https://auth.example.com", "mytool")
	if _, err := store.Load(ctx, key); errors.Is(err, tokenstore.ErrNotFound) {
		fmt.Println("not logged in")
	}
	_ = store.Save(ctx, key, []byte("token"))
	v, _ := store.Load(ctx, key)
	fmt.Println(string(v))
	// Output:
	// not logged in
	// token
}

func ExampleKey() {
	fmt.Println(tokenstore.Key("", "https://auth.example.com", "mytool"))
	fmt.Println(tokenstore.Key("work", "https://auth.example.com", "mytool"))
	// Output:
	// default@auth.example.com-e1719fecda74
	// work@auth.example.com-8f6c57013642
}

// A CLI opens its store once, keyed by its own name. ModeAuto (the zero
// value) would use the OS keychain and fall back to a file; this example
// forces a file in a temporary directory so it runs anywhere.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "mytool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := tokenstore.Open(tokenstore.Options{App: "mytool", Mode: tokenstore.ModeFile, Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	profile := "" // from --profile or MYTOOL_PROFILE; "" is the default profile
	key := tokenstore.Key(profile, "https://auth.example.com", "mytool")

	// Hold the cross-process lock around a read-modify-write such as a refresh.
	unlock, err := store.(tokenstore.Locker).Lock(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, key, []byte("token")); err != nil {
		log.Fatal(err)
	}
	unlock()

	loc, _ := store.(tokenstore.Locator).Locate(ctx, key)
	rel, _ := filepath.Rel(dir, loc.Path)
	fmt.Println(loc.Kind, rel)
	// Output:
	// file default@auth.example.com-e1719fecda74.token
}

func ExampleMarshalRecord() {
	rec := &tokenstore.Record{
		AccessToken: "eyJhbGciOiJFZERTQSJ9.e30.sig",
		Expiry:      time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Issuer:      "https://auth.example.com",
		ClientID:    "mytool",
	}
	b, err := tokenstore.MarshalRecord(rec)
	if err != nil {
		log.Fatal(err)
	}
	back, err := tokenstore.UnmarshalRecord(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Issuer, back.Expiry.Format(time.RFC3339))
	fmt.Println(back.AccessToken) // secrets redact themselves
	fmt.Println(back.AccessToken.Reveal() == string(rec.AccessToken))
	// Output:
	// https://auth.example.com 2030-01-02T03:04:05Z
	// [redacted]
	// true
}
