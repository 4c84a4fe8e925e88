package redisstate_test

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyloop/keyloop/server"
)

// A device login started on A and approved through B is polled by two
// pollers at once on each replica: exactly one poll gets tokens, and the
// polls after it are taken for reuse (invalid_grant) on either replica,
// which ends the login everywhere within the revocation bound.
func TestDeviceCodePolledOnTwoReplicasAtOnce(t *testing.T) {
	c := newCluster(t, 2, 300*time.Millisecond)
	da := c.post(0, server.DeviceAuthorizationPath, url.Values{"client_id": {"mytool"}})
	dc, uc := da.str("device_code"), da.str("user_code")
	if da.status != 200 || dc == "" || uc == "" {
		t.Fatalf("device authorization on A: %d %v", da.status, da.m)
	}
	poll := url.Values{"grant_type": {server.DeviceCodeGrantType}, "device_code": {dc}, "client_id": {"mytool"}}
	if r := c.post(1, server.TokenPath, poll); r.status != 400 || r.str("error") != "authorization_pending" {
		t.Fatalf("poll on B before approval: %d %v", r.status, r.m)
	}

	b := c.client(c.on(1), true)
	p, err := get(b, issuer+server.DevicePath+"?"+url.Values{"user_code": {uc}}.Encode())
	if err == nil {
		p, err = submit(b, p, url.Values{"email": {"ada@example.com"}})
	}
	if err == nil && !strings.Contains(p.body, ">Authorize</button>") {
		t.Fatalf("expected the consent page, got %d:\n%s", p.status, p.body)
	}
	if err == nil {
		p, err = submit(b, p, url.Values{"decision": {"authorize"}})
	}
	if err != nil || p.status != 200 {
		t.Fatalf("approving on B: %v %d\n%s", err, p.status, p.body)
	}

	const perReplica = 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted []tokenReply
		start   = make(chan struct{})
	)
	for i := range 2 * perReplica {
		wg.Go(func() {
			<-start
			r, err := c.postErr(i%2, server.TokenPath, poll)
			if err != nil {
				t.Error(err)
				return
			}
			switch {
			case r.status == 200:
				mu.Lock()
				granted = append(granted, r)
				mu.Unlock()
			case r.status != 400 || r.str("error") != "invalid_grant":
				t.Errorf("concurrent poll on %s: %d %v; want tokens once, invalid_grant otherwise", c.replicas[i%2].name, r.status, r.m)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(granted) != 1 {
		t.Fatalf("%d of %d concurrent polls on two replicas got tokens; want exactly 1", len(granted), 2*perReplica)
	}
	for i := range 2 {
		if r := c.post(i, server.TokenPath, poll); r.status != 400 || r.str("error") != "invalid_grant" {
			t.Fatalf("poll on %s after the tokens were issued: %d %v", c.replicas[i].name, r.status, r.m)
		}
	}
	at := granted[0].str("access_token")
	for i := range 2 {
		eventually(t, "the reused device code's login is refused on "+c.replicas[i].name, func() bool { st, _ := c.api(i, at); return st == 401 })
	}
	if r := c.refresh(0, granted[0].str("refresh_token")); r.status != 400 {
		t.Fatalf("refresh of the reused device code's login: %d %v", r.status, r.m)
	}
}
