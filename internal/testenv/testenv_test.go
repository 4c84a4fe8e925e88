package testenv

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/zalando/go-keyring"
)

func TestKeychainRoundTrip(t *testing.T) {
	RequireKeychain(t)
	user := RandomString(8)
	if err := keyring.Set("keyloop-testenv", user, "v"); err != nil {
		t.Fatal(err)
	}
	got, err := keyring.Get("keyloop-testenv", user)
	if err != nil || got != "v" {
		t.Fatalf("Get = %q, %v; want v", got, err)
	}
	_ = keyring.Delete("keyloop-testenv", user)
}

func TestBrowserEvaluates(t *testing.T) {
	ctx := Browser(t)
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`40 + 2`))
	if err != nil || n != 42 {
		t.Fatalf("Evaluate = %d, %v; want 42", n, err)
	}
}
