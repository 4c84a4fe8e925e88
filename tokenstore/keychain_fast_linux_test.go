package tokenstore

import (
	"strings"
	"testing"

	"github.com/zalando/go-keyring"

	"github.com/keyloop/keyloop/internal/testenv"
)

// fastGet reads exactly what go-keyring's Get reads, and leaves to it
// every item it cannot read in its two round trips.
func TestFastGetReadsWhatGoKeyringReads(t *testing.T) {
	testenv.RequireKeychain(t)
	if err := sessionBus(); err != nil {
		t.Fatal(err)
	}
	service := "keyloop-test-fastget-" + strings.ReplaceAll(t.Name(), "/", "-")
	for _, v := range []string{"a token", "", "ünïcode ✓ " + strings.Repeat("x", 100<<10)} {
		if err := keyring.Set(service, "ada", v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { keyring.Delete(service, "ada") })
		want, err := keyring.Get(service, "ada")
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fastGet(service, "ada")
		if !ok || got != want || got != v {
			t.Fatalf("fastGet = %.40q, %v; go-keyring reads %.40q", got, ok, want)
		}
	}
	if got, ok := fastGet(service, "nobody"); ok {
		t.Fatalf("fastGet of a missing item = %q, true; want it left to go-keyring", got)
	}
	if got, ok := fastGet(service+"-other", "ada"); ok {
		t.Fatalf("fastGet of another service's item = %q, true", got)
	}
}
