package confirm

import (
	"regexp"
	"testing"
)

func TestCode(t *testing.T) {
	re := regexp.MustCompile(`^[A-Z2-9]{4}-[A-Z2-9]{4}$`)
	a, b := Code("state-one"), Code("state-two")
	if !re.MatchString(a) || !re.MatchString(b) {
		t.Fatalf("codes %q, %q not in the form ABCD-EFGH", a, b)
	}
	if a == b {
		t.Fatalf("different states gave the same code %q", a)
	}
	if Code("state-one") != a {
		t.Fatal("code is not deterministic")
	}
	if Code("") != "" {
		t.Fatal("empty state must give an empty code")
	}
}
