//go:build unix

package testenv

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dbus "github.com/godbus/dbus/v5"
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
	busDaemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		Missing(t, "dbus-daemon", "apt-get install dbus-daemon")
		return nil
	}
	keyringDaemon, err := exec.LookPath("gnome-keyring-daemon")
	if err != nil {
		Missing(t, "gnome-keyring-daemon", "apt-get install gnome-keyring")
		return nil
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
	addr := strings.TrimSpace(line)

	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	kr := exec.Command(keyringDaemon, "--foreground", "--unlock", "--components=secrets")
	kr.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+addr, "XDG_RUNTIME_DIR="+home,
		"XDG_DATA_HOME="+home, "XDG_CACHE_HOME="+home, "XDG_CONFIG_HOME="+home)
	kr.Stdin = strings.NewReader("keyloop-test")
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
			return &Keyring{Addr: addr, daemon: kr.Process}
		}
		if ctx.Err() != nil {
			t.Fatalf("gnome-keyring-daemon did not register on the bus: %v", err)
		}
	}
}
