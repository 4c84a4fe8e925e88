package tokenstore

import (
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	const iss, cid = "https://auth.example.com", "mytool"
	def := Key("", iss, cid)
	if def != Key(DefaultProfile, iss, cid) {
		t.Errorf("Key(\"\") = %q, want the default profile's key %q", def, Key(DefaultProfile, iss, cid))
	}
	if !strings.HasPrefix(def, "default@auth.example.com-") {
		t.Errorf("Key = %q, want it to start with default@auth.example.com-", def)
	}
	// Stable across releases: stored entries are found by this value.
	if want := "default@auth.example.com-e1719fecda74"; def != want {
		t.Errorf("Key = %q, want %q (changing it orphans every stored login)", def, want)
	}
	seen := map[string]string{}
	for _, c := range []struct{ profile, issuer, client string }{
		{"", iss, cid},
		{"work", iss, cid},
		{"Work", iss, cid},
		{"w/ork", iss, cid},
		{"w_ork", iss, cid},
		{"", iss + "/", cid},
		{"", "https://auth.example.com:8443", cid},
		{"", "http://auth.example.com", cid},
		{"", iss, "other"},
		{"", "not a url", cid},
		{strings.Repeat("p", 200), iss, cid},
		{strings.Repeat("p", 201), iss, cid},
	} {
		k := Key(c.profile, c.issuer, c.client)
		if prev, dup := seen[k]; dup {
			t.Errorf("Key(%q, %q, %q) = %q, same as for %s", c.profile, c.issuer, c.client, k, prev)
		}
		seen[k] = c.profile + " " + c.issuer + " " + c.client
		if len(k) > 120 || strings.ContainsAny(k, "/\\: \x00") {
			t.Errorf("Key(%q, %q, %q) = %q: too long or has unsafe characters", c.profile, c.issuer, c.client, k)
		}
	}
}

func TestFileName(t *testing.T) {
	for key, want := range map[string]string{
		"default@auth.example.com-e1719fecda74": "default@auth.example.com-e1719fecda74",
		"../../etc/passwd":                      "%2E.%2F..%2Fetc%2Fpasswd",
		"Work":                                  "%57ork",
		".hidden":                               "%2Ehidden",
		"":                                      "%",
		"%":                                     "%25",
		"con":                                   "%63on",
		"nul.txt":                               "%6Eul.txt",
		`a\b:c`:                                 "a%5Cb%3Ac",
	} {
		if got := fileName(key); got != want {
			t.Errorf("fileName(%q) = %q, want %q", key, got, want)
		}
	}
	long1, long2 := strings.Repeat("a", 300)+"1", strings.Repeat("a", 300)+"2"
	if n1, n2 := fileName(long1), fileName(long2); n1 == n2 || len(n1) > 120 || !strings.Contains(n1, "~") {
		t.Errorf("long keys map to %q and %q; want distinct names of at most 120 bytes", n1, n2)
	}
}
