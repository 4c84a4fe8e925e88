package tokenstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	dbus "github.com/godbus/dbus/v5"
)

func TestClassifyDBus(t *testing.T) {
	for _, c := range []struct {
		err      error
		notFound bool
		reason   string
	}{
		// An item another process deleted between go-keyring's search and read.
		{dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod",
			Body: []any{"Object does not exist at path “/org/freedesktop/secrets/collection/login/5”"}}, true, ""},
		{&dbus.Error{Name: "org.freedesktop.Secret.Error.NoSuchObject"}, true, ""},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown",
			Body: []any{"The name org.freedesktop.secrets was not provided by any .service files"}}, false, "no Secret Service provider"},
		{fmt.Errorf("wrapped: %w", dbus.Error{Name: "org.freedesktop.DBus.Error.NoReply"}), false, "did not reply"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}, false, "refused the request (org.freedesktop.DBus.Error.AccessDenied)"},
	} {
		err := classify(c.err)
		if errors.Is(err, ErrNotFound) != c.notFound || errors.Is(err, ErrKeychainUnavailable) == c.notFound {
			t.Errorf("classify(%v) = %v; want not found = %v", c.err, err, c.notFound)
		}
		if c.reason != "" && !strings.Contains(err.Error(), c.reason) {
			t.Errorf("classify(%v) = %v; want it to say %q", c.err, err, c.reason)
		}
	}
}
