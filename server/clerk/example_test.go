package clerk_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/clerk"
	"github.com/keyloop/keyloop/server/clerk/clerktest"
)

// A keyloop backend with Clerk as identity layer and token minter. The
// Frontend API URL (the issuer of Clerk's tokens) comes from the
// publishable key.
func ExampleNew() {
	p, err := clerk.New(clerk.Config{
		SecretKey:      "sk_test_…",                            // os.Getenv("CLERK_SECRET_KEY")
		PublishableKey: "pk_test_ZXhhbXBsZS5hY2NvdW50cy5kZXYk", // os.Getenv("CLERK_PUBLISHABLE_KEY")
		Audience:       "https://api.example.com",              // the "aud" of the "cli" JWT template
		Issuer:         "https://auth.example.com",             // this backend; its origin may request session tokens
	})
	if err != nil {
		log.Fatal(err)
	}
	h, err := server.New(server.Config{
		Issuer:        "https://auth.example.com",
		Clients:       []server.Client{{ID: "mytool"}},
		Authenticator: p,
		Minter:        p,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle(server.MetadataPath, h)
	mux.Handle("/oauth/", h)

	ki := p.KeyInfo()
	fmt.Println("tokens issued by", ki.TokenIssuer)
	fmt.Println("keys at", ki.JWKSURI)
	// Output:
	// tokens issued by https://example.accounts.dev
	// keys at https://example.accounts.dev/.well-known/jwks.json
}

type printRevoker struct{}

func (printRevoker) RevokeSubject(_ context.Context, sub string) error {
	fmt.Println("revoke every login of a user:", sub == user.ID)
	return nil
}

func (printRevoker) RevokeIdentitySession(context.Context, string) error {
	fmt.Println("revoke the logins of a Clerk session")
	return nil
}

var user clerktest.User

// The webhook endpoint for Clerk's user.deleted, user.updated (bans and
// locks) and session.* events, here
// receiving a delivery from the fake Clerk of package clerktest. In a real
// backend the Revoker is the *server.Handler.
func ExampleProvider_WebhookHandler() {
	fake, err := clerktest.Start(clerktest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer fake.Close()
	user = fake.CreateUser("ada@example.com")

	p, err := clerk.New(clerk.Config{
		SecretKey:      fake.SecretKey,
		PublishableKey: fake.PublishableKey,
		FrontendAPIURL: fake.FrontendAPIURL,
		APIURL:         fake.APIURL,
		Issuer:         "http://127.0.0.1:8787",
		WebhookSecret:  fake.WebhookSecret, // os.Getenv("CLERK_WEBHOOK_SECRET")
	})
	if err != nil {
		log.Fatal(err)
	}
	wh, err := p.WebhookHandler(printRevoker{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/clerk", wh)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	status, err := fake.SendWebhook(context.Background(), srv.URL+"/webhooks/clerk", "user.deleted",
		map[string]any{"id": user.ID, "object": "user", "deleted": true})
	fmt.Println(status, err)
	// Output:
	// revoke every login of a user: true
	// 200 <nil>
}

// CheckSetup reads the JWT template through the Backend API (here the fake
// Clerk of package clerktest, whose "cli" template lacks keyloop's marker
// claim) and says what to change.
func ExampleProvider_CheckSetup() {
	fake, err := clerktest.Start(clerktest.Options{Templates: map[string]clerktest.Template{
		"cli": {Claims: map[string]any{"aud": "https://api.example.com"}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer fake.Close()
	p, err := clerk.New(clerk.Config{
		SecretKey:      fake.SecretKey,
		PublishableKey: fake.PublishableKey,
		APIURL:         fake.APIURL,
		Audience:       "https://api.example.com",
		Issuer:         "https://auth.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}
	err = p.CheckSetup(context.Background())
	fmt.Println(errors.Is(err, clerk.ErrSetup))
	fmt.Println(err)
	// Output:
	// true
	// clerk: Clerk instance set-up does not match: JWT template "cli" (Dashboard → JWT templates → cli): add the claim "keyloop_template": "cli"
}
