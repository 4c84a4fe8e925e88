//go:build unix

package testenv

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a redis-server a test started: no persistence, listening
// on a unix socket in a private temp dir (and on nothing else unless the
// test asked). It is stopped when the test ends.
type RedisServer struct {
	// URL reaches the server over its unix socket (unix:///…/redis.sock).
	URL string
	// Socket is the unix socket's path; Dir the server's own directory.
	Socket, Dir string

	t     testing.TB
	path  string
	extra []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	paused bool
	exited chan struct{}
	out    *SyncBuffer
}

// Redis starts a redis-server for the test on a unix socket in a new temp
// dir, with persistence off (`--save "" --appendonly no`) and TCP off unless
// extraArgs say otherwise (they are appended, e.g. "--tls-port", "6390").
// It fails the test in CI and skips it elsewhere when redis-server is not
// installed.
func Redis(t testing.TB, extraArgs ...string) *RedisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server", "apt-get install redis-server")
		return nil
	}
	// Unix socket paths are limited to about 100 bytes; t.TempDir's may be
	// longer.
	dir, err := os.MkdirTemp("", "kl-redis-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &RedisServer{Dir: dir, Socket: filepath.Join(dir, "redis.sock"), t: t, path: path, extra: extraArgs}
	r.URL = "unix://" + r.Socket
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server again after Stop, on the same socket and empty.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	args := append([]string{
		"--port", "0", "--unixsocket", r.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", r.Dir, "--loglevel", "warning",
	}, r.extra...)
	cmd := exec.Command(r.path, args...)
	r.out = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for !r.answersPing() {
		select {
		case <-exited:
			r.cmd = nil
			r.t.Fatalf("redis-server %s exited at start:\n%s", strings.Join(args, " "), r.out)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not answer on %s within 20s:\n%s", r.Socket, r.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.exited = exited
}

// answersPing reports whether the server answers PING on its socket.
func (r *RedisServer) answersPing() bool {
	c, err := net.DialTimeout("unix", r.Socket, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")) // up, maybe with a password
}

// Stop stops the server (its data is gone: there is no persistence).
// Stopping a stopped server does nothing.
func (r *RedisServer) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	if r.paused {
		r.cmd.Process.Signal(syscall.SIGCONT)
		r.paused = false
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
	os.Remove(r.Socket)
}

// Pause freezes the server (SIGSTOP): connections stay open and commands
// get no answer, as with an overloaded or partitioned Redis. Resume
// thaws it with its data intact.
func (r *RedisServer) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil && !r.paused {
		r.cmd.Process.Signal(syscall.SIGSTOP)
		r.paused = true
	}
}

// Resume thaws a paused server (SIGCONT).
func (r *RedisServer) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil && r.paused {
		r.cmd.Process.Signal(syscall.SIGCONT)
		r.paused = false
	}
}
