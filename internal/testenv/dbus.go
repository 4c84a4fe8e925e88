package testenv

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dbus "github.com/godbus/dbus/v5"
)

// StartLockedKeyring starts a private dbus-daemon with a gnome-keyring-daemon
// on it that was never unlocked and has no prompter to ask for a password,
// and returns the bus address. Both stop when the test ends. It needs
// dbus-daemon and gnome-keyring-daemon (Missing otherwise, returning "").
func StartLockedKeyring(t testing.TB) string {
	t.Helper()
	addr := StartBus(t)
	if addr == "" || startGnomeKeyring(t, addr, false) == nil {
		return ""
	}
	return addr
}

// StartBus starts a private dbus-daemon session bus that has no service
// files, so nothing provides org.freedesktop.secrets on it, and returns its
// address ("unix:path=<dir>/bus,guid=..."). It stops when the test ends. It
// needs dbus-daemon (Missing otherwise, returning "").
func StartBus(t testing.TB) string {
	t.Helper()
	busDaemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		Missing(t, "dbus-daemon", "apt-get install dbus-daemon")
		return ""
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "bus.conf")
	err = os.WriteFile(config, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bus := exec.Command(busDaemon, "--config-file="+config, "--print-address", "--nofork")
	stdout, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() { _ = bus.Process.Kill(); _ = bus.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// startGnomeKeyring starts a gnome-keyring-daemon (secrets component) on the
// bus at addr, unlocked with a fixed password or never unlocked, stopped when
// the test ends, and waits until it owns org.freedesktop.secrets. It returns
// nil when gnome-keyring-daemon is Missing.
func startGnomeKeyring(t testing.TB, addr string, unlock bool) *os.Process {
	t.Helper()
	keyringDaemon, err := exec.LookPath("gnome-keyring-daemon")
	if err != nil {
		Missing(t, "gnome-keyring-daemon", "apt-get install gnome-keyring")
		return nil
	}
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"--foreground", "--components=secrets"}
	if unlock {
		args = append(args, "--unlock")
	}
	kr := exec.Command(keyringDaemon, args...)
	kr.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+addr, "XDG_RUNTIME_DIR="+home,
		"XDG_DATA_HOME="+home, "XDG_CACHE_HOME="+home, "XDG_CONFIG_HOME="+home)
	if unlock {
		kr.Stdin = strings.NewReader("keyloop-test")
	}
	if err := kr.Start(); err != nil {
		t.Fatalf("start gnome-keyring-daemon: %v", err)
	}
	// SIGKILL ends a paused daemon too.
	t.Cleanup(func() { _ = kr.Process.Kill(); _ = kr.Wait() })
	// A private connection, not godbus's shared one.
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ; ; time.Sleep(10 * time.Millisecond) {
		var has bool
		err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.secrets").Store(&has)
		if err == nil && has {
			return kr.Process
		}
		if ctx.Err() != nil {
			t.Fatalf("gnome-keyring-daemon did not register on the bus: %v", err)
		}
	}
}
