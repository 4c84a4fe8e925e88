package boltstate_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/boltstate"
)

// A single-instance backend keeping its logins in one file under its data
// directory, moving over the logins of a FileStateStore file it used before.
func ExampleOpen() {
	dataDir, _ := os.MkdirTemp("", "backend")
	defer os.RemoveAll(dataDir)

	state, err := boltstate.Open(boltstate.Config{Path: filepath.Join(dataDir, "state.db")})
	if err != nil {
		log.Fatal(err) // e.g. another backend has the file open
	}
	defer state.Close() // stops the background sweep
	n, err := boltstate.MigrateFileState(context.Background(), state, filepath.Join(dataDir, "state.json"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("moved from state.json:", n)

	var cfg server.Config
	cfg.State = state // and Issuer, Clients, Authenticator, Minter as usual

	ctx := context.Background()
	state.Put(ctx, "k", []byte("v"), time.Minute)
	v, _ := state.Take(ctx, "k")
	_, err = state.Take(ctx, "k")
	fmt.Println(string(v), err)
	// Output:
	// moved from state.json: 0
	// v server: state not found
}
