package redisstate_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyloop/keyloop/internal/testenv"
	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/redisstate"
)

// Two instances share one replay guard: a webhook delivery is handled once,
// whichever instance gets it, and again only after Release or expiry.
func TestReplayGuardAcrossInstances(t *testing.T) {
	r := testenv.Redis(t)
	ctx := t.Context()
	var a, b clerk.ReplayGuard = open(t, r.URL, redisstate.Options{}).ReplayGuard("clerk:"),
		open(t, r.URL, redisstate.Options{}).ReplayGuard("clerk:")
	until := time.Now().Add(time.Hour)
	var firsts atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			g := a
			if i%2 == 1 {
				g = b
			}
			first, err := g.Claim(ctx, "msg_1", until)
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	wg.Wait()
	if firsts.Load() != 1 {
		t.Fatalf("%d of 16 concurrent claims of one message on two instances were first; want 1", firsts.Load())
	}
	if err := b.Release(ctx, "msg_1"); err != nil {
		t.Fatal(err)
	}
	if first, err := a.Claim(ctx, "msg_1", until); !first || err != nil {
		t.Fatalf("claim after release: %v, %v", first, err)
	}
	if first, err := a.Claim(ctx, "msg_short", time.Now().Add(200*time.Millisecond)); !first || err != nil {
		t.Fatal(first, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		first, err := b.Claim(ctx, "msg_short", time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a claim did not expire at its until")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	if _, err := a.Claim(ctx, "msg_2", until); err == nil {
		t.Fatal("Claim with Redis down succeeded")
	}
}
