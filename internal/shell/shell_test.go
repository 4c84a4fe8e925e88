package shell

import "testing"

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "''",
		"http://127.0.0.1:9999": "http://127.0.0.1:9999",
		"work,prod=1":           "work,prod=1",
		"my profile":            "'my profile'",
		"it's":                  `'it'\''s'`,
		"$HOME":                 "'$HOME'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s; want %s", in, got, want)
		}
	}
}
