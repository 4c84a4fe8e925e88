package tokenstore

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"

	dbus "github.com/godbus/dbus/v5"
)

// dbusName returns the D-Bus error name in err's chain, or "".
func dbusName(err error) string {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &de):
		return de.Name
	case errors.As(err, &dep):
		return dep.Name
	}
	return ""
}

// dbusVanished reports whether err says the item went away between go-keyring
// finding it and reading or deleting it (another process deleted it), which
// is "not found", not a broken keychain.
func dbusVanished(err error) bool {
	switch dbusName(err) {
	case "org.freedesktop.Secret.Error.NoSuchObject":
		return true
	case "org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownObject":
		return strings.Contains(err.Error(), "does not exist")
	}
	return false
}

// dbusReason describes D-Bus failures of the Secret Service, or returns "".
func dbusReason(err error) string {
	switch name := dbusName(err); name {
	case "":
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		return "no Secret Service provider (such as gnome-keyring) on the D-Bus session bus"
	case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
		return "the Secret Service did not reply"
	default:
		return "the Secret Service refused the request (" + name + ")"
	}
	var ne *net.OpError
	if errors.As(err, &ne) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return "cannot connect to the D-Bus session bus at DBUS_SESSION_BUS_ADDRESS=" + os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	}
	if errors.Is(err, dbus.ErrClosed) {
		return "the D-Bus session bus connection is closed"
	}
	return ""
}
