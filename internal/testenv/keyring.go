//go:build unix

package testenv

import (
	"os"
	"syscall"
	"testing"
)

// Keyring is a private D-Bus session bus with an unlocked gnome-keyring on
// it, started for one test, that the test may pause (as a hung keyring
// daemon) and resume.
type Keyring struct {
	// Addr is the bus address, for DBUS_SESSION_BUS_ADDRESS.
	Addr   string
	daemon *os.Process
}

// Pause stops the keyring daemon with SIGSTOP: the bus still accepts calls
// to it, which then never get an answer.
func (k *Keyring) Pause(t testing.TB) {
	t.Helper()
	if err := k.daemon.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused keyring daemon with SIGCONT.
func (k *Keyring) Resume(t testing.TB) {
	t.Helper()
	if err := k.daemon.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// StartKeyring starts a private dbus-daemon and an unlocked
// gnome-keyring-daemon on it, both stopped when the test ends. It needs
// dbus-daemon and gnome-keyring-daemon (Missing otherwise).
func StartKeyring(t testing.TB) *Keyring {
	t.Helper()
	addr := StartBus(t)
	if addr == "" {
		return nil
	}
	daemon := startGnomeKeyring(t, addr, true)
	if daemon == nil {
		return nil
	}
	return &Keyring{Addr: addr, daemon: daemon}
}
