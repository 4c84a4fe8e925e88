//go:build !unix

package testenv

import "testing"

// RedisServer is a redis-server a test started; see the unix version.
type RedisServer struct {
	// URL reaches the server; empty here.
	URL string
	// Socket is the unix socket's path; empty here.
	Socket string
	// Dir is the server's directory; empty here.
	Dir string
}

// Redis reports redis-server as missing: the tests drive it over a unix
// socket and with job-control signals.
func Redis(t testing.TB, extraArgs ...string) *RedisServer {
	t.Helper()
	Missing(t, "redis-server on a unix system", "run the Redis tests on Linux or macOS")
	return nil
}

// Start does nothing here.
func (r *RedisServer) Start() {}

// Stop does nothing here.
func (r *RedisServer) Stop() {}

// Pause does nothing here.
func (r *RedisServer) Pause() {}

// Resume does nothing here.
func (r *RedisServer) Resume() {}
