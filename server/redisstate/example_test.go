package redisstate_test

import (
	"log"
	"net/http"
	"os"
	"time"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/redisstate"
)

// Several replicas of a backend share their login state through one Redis
// (REDIS_URL such as rediss://:password@redis.example.com:6380/0).
func ExampleOpen() {
	state, err := redisstate.Open(os.Getenv("REDIS_URL"), redisstate.Options{
		Prefix:  "myapp:",               // one Redis, several apps
		Timeout: 500 * time.Millisecond, // per Redis round trip
	})
	if err != nil {
		log.Fatal(err)
	}
	defer state.Close()

	var cfg server.Config // Issuer, Clients, Authenticator and Minter as for one instance
	cfg.State = state
	h, err := server.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle("/oauth/", h)
	log.Fatal(http.ListenAndServe(":8080", mux))
}
