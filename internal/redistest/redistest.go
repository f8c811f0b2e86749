// Package redistest starts throwaway redis-server processes on free loopback
// ports for tests, benchmarks and the chaos suite. Tests never touch a Redis
// they did not start.
//
// Start gives one server. StartCluster gives a Redis Cluster (3 masters and
// 3 replicas by default) and StartSentinel a master, its replica and 3
// sentinels; both can kill the master (KillMaster), wait for the failover
// (WaitFailover) and for the topology to be whole again (WaitHealthy), and
// every node can be restarted (Node.Restart). They need redis-server 7.0 or
// later and nothing else: the sentinels are redis-server --sentinel. Every
// process is stopped by pid (Stop, or t.Cleanup through the Must* forms),
// dies with the test process on Linux, and keeps its log in its directory
// (Logs prints the ends of them).
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a server.
type Options struct {
	// AOF turns on the append-only file with appendfsync always, so a restart
	// keeps every acknowledged write.
	AOF bool
	// Dir holds the data files. Defaults to a new temporary directory.
	Dir string
}

// Server is a running redis-server child process.
type Server struct {
	Addr string
	opts Options
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Binary is the redis-server executable used; REDIS_SERVER overrides it.
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	return "redis-server"
}

// Start launches a redis-server on a free loopback port and waits until it
// answers PING.
func Start(opts Options) (*Server, error) {
	bin, err := exec.LookPath(Binary())
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH: install it (Debian: apt-get install -y redis-server) or run `make test`, which installs it: %w", err)
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "baton-redis-*")
		if err != nil {
			return nil, fmt.Errorf("redistest: temp dir: %w", err)
		}
		opts.Dir = d
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), opts: opts, port: port}
	if err := s.launch(bin); err != nil {
		return nil, err
	}
	return s, nil
}

// MustStart starts a server for tb and stops it when the test ends.
func MustStart(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) args() []string {
	a := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.opts.Dir,
		"--save", "",
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", filepath.Join(s.opts.Dir, "redis.log"),
	}
	if s.opts.AOF {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	return a
}

func (s *Server) launch(bin string) error {
	cmd := exec.Command(bin, s.args()...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", bin, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	if awaitPing(s.Addr, nil, 10*time.Second) == nil {
		return nil
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("redistest: redis-server on %s did not answer PING within 10s (log: %s)", s.Addr, filepath.Join(s.opts.Dir, "redis.log"))
}

var (
	errExited = errors.New("exited")
	errNoPong = errors.New("no answer to PING")
)

// awaitPing polls addr until it answers PING (nil), exited is closed
// (errExited; nil never is) or timeout passes (errNoPong).
func awaitPing(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			ok := ping(c)
			_ = c.Close()
			if ok {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errNoPong
}

func ping(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// URL is the redis:// URL of database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// Client returns a go-redis client for database db, closed when tb ends.
func (s *Server) Client(tb testing.TB, db int) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill stops the server with SIGKILL (no shutdown save).
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart kills the server and starts it again on the same port and data
// directory; with AOF on, every acknowledged write survives.
func (s *Server) Restart() error {
	s.Kill()
	bin, err := exec.LookPath(Binary())
	if err != nil {
		return err
	}
	return s.launch(bin)
}

// Stop shuts the server down and removes nothing it was not given.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// FlushDB empties database db.
func (s *Server) FlushDB(ctx context.Context, db int) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db})
	defer c.Close()
	return c.FlushDB(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
