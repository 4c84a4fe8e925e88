package tokenstore

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
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
		return "cannot connect to the D-Bus session bus"
	}
	if errors.Is(err, dbus.ErrClosed) {
		return "the D-Bus session bus connection is closed"
	}
	return ""
}

// dbusAbsent reports whether err says the bus has no Secret Service
// provider: there is no keychain in this session.
func dbusAbsent(err error) bool {
	switch dbusName(err) {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		return true
	}
	return false
}

// sessionBus makes sure godbus will connect to an existing session bus and
// never start one: godbus runs dbus-launch when DBUS_SESSION_BUS_ADDRESS is
// unset (and /run/user/UID/bus is missing), which leaves a dbus-daemon
// running after every process. With the variable unset or "autolaunch:",
// the per-user bus $XDG_RUNTIME_DIR/bus (/run/user/UID/bus when
// XDG_RUNTIME_DIR is unset) is used when that socket exists, by setting the
// variable for this process; otherwise errNoSessionBus.
func sessionBus() error {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return nil
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = fmt.Sprintf("/run/user/%d", os.Getuid())
	}
	p := filepath.Join(dir, "bus")
	if fi, err := os.Stat(p); err != nil || fi.Mode().Type() != fs.ModeSocket {
		return errNoSessionBus
	}
	return os.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+dbus.EscapeBusAddressValue(p))
}

// keychainWhere names the keychain for people.
func keychainWhere() string {
	a := os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	if a == "" || a == "autolaunch:" {
		return "the Secret Service (no D-Bus session bus)"
	}
	if i := strings.Index(a, ",guid="); i > 0 {
		a = a[:i]
	}
	return "the Secret Service on the D-Bus session bus at " + a
}
