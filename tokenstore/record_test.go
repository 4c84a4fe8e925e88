package tokenstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSecretRedacts prints a Secret, alone and inside a Record, through
// every formatting path a program might use by accident.
func TestSecretRedacts(t *testing.T) {
	const raw = "s3cr3t-token-value"
	s := Secret(raw)
	rec := &Record{AccessToken: s, RefreshToken: s, Issuer: "https://auth.example.com"}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-5v"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, rec), fmt.Sprintf(verb, *rec),
			fmt.Sprintf(verb, []Secret{s}), fmt.Sprintf(verb, map[string]Secret{"k": s}))
	}
	out = append(out, fmt.Sprint(s), fmt.Sprintln(rec), s.String(), s.GoString())
	for _, v := range []any{s, rec, map[string]any{"s": s}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	text, _ := s.MarshalText()
	out = append(out, string(text))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("login", "token", s, "record", rec, slog.Any("ptr", &s), slog.Group("g", "t", s))
	}
	out = append(out, logs.String())
	for _, o := range out {
		if strings.Contains(o, raw) || strings.Contains(o, fmt.Sprintf("%x", raw)) {
			t.Errorf("output reveals the secret: %s", o)
		}
	}
	if s.Reveal() != raw {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

func TestRecordVersions(t *testing.T) {
	rec := &Record{AccessToken: "a", RefreshToken: "r", Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		Issuer: "https://auth.example.com/", ClientID: "mytool", IDToken: "id", IssuerJWKSURI: "https://auth.example.com/jwks",
		TokenAuth: "client_secret_basic"}
	b, err := MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := UnmarshalRecord(b); err != nil || *got != *rec {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if !strings.Contains(string(b), `"version":1`) {
		t.Errorf("a plain record is not written as version 1 (older releases could not read it): %s", b)
	}
	// Access tokens the client does not verify need version 3: an older
	// release would try to verify them as JWTs at the next refresh and fail.
	opaque := *rec
	opaque.AccessTokenOpaque = true
	opaque.Pending = &Pending{AccessToken: "p", IDToken: "id2", ReceivedAt: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)}
	if b, err = MarshalRecord(&opaque); err != nil || !strings.Contains(string(b), `"version":3`) {
		t.Errorf("an opaque-token record written as %s, %v; want version 3", b, err)
	}
	if got, err := UnmarshalRecord(b); err != nil || !got.AccessTokenOpaque || got.Pending == nil || *got.Pending != *opaque.Pending {
		t.Errorf("opaque round trip = %+v, %v", got, err)
	}
	// A pending token, an ended login and a lost refresh need version 2, so
	// an older release refuses them instead of serving an unverified token
	// or calling a dead login live.
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	for name, r := range map[string]*Record{
		"pending": {AccessToken: "a", RefreshToken: "r2", Issuer: "i", Pending: &Pending{AccessToken: "p", TokenType: "Bearer", Expiry: at, ReceivedAt: at}},
		"ended":   {Issuer: "i", Subject: "u1", Account: "ada@example.com", Ended: &Ended{At: at, Reason: "revoked", Description: "gone"}},
		"lost":    {AccessToken: "a", RefreshToken: "r", LostRefreshAt: at},
	} {
		b, err := MarshalRecord(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(string(b), `"version":2`) {
			t.Errorf("%s written as %s; want version 2", name, b)
		}
		got, err := UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if (got.Pending == nil) != (r.Pending == nil) || got.Pending != nil && *got.Pending != *r.Pending ||
			(got.Ended == nil) != (r.Ended == nil) || got.Ended != nil && *got.Ended != *r.Ended || !got.LostRefreshAt.Equal(r.LostRefreshAt) {
			t.Errorf("%s round trip = %+v", name, got)
		}
	}
	// Version 1 as first released: an older library's output stays readable.
	v1 := `{"version":1,"access_token":"a","expiry":"2030-01-01T00:00:00Z","issuer":"i","client_id":"c","token_endpoint":"e"}`
	if got, err := UnmarshalRecord([]byte(v1)); err != nil || got.AccessToken.Reveal() != "a" || got.TokenEndpoint != "e" {
		t.Fatalf("version 1 = %+v, %v", got, err)
	}
	for name, c := range map[string]struct{ in, msg string }{
		"newer":         {`{"version":4,"access_token":"secret-a"}`, "version 4 is newer than this program reads (3); upgrade it"},
		"empty pending": {`{"version":2,"access_token":"secret-a","pending":{"access_token":""}}`, "pending token is empty"},
		"no version":    {`{"access_token":"secret-a"}`, "no version"},
		"no token":      {`{"version":1}`, "no access token"},
		"not json":      {`secret-a`, "not a token record (8 bytes)"},
	} {
		_, err := UnmarshalRecord([]byte(c.in))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "secret-a") {
			t.Errorf("%s: %v; want ErrCorrupt saying %q, not quoting the value", name, err, c.msg)
		}
	}
	if _, err := MarshalRecord(&Record{}); err == nil {
		t.Error("MarshalRecord of a record without an access token succeeded")
	}
}
