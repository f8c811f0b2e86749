package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one redis-server process of a Cluster or a SentinelSet (a data
// node or a sentinel) on a free loopback port. Its directory holds its log
// (redis.log), what it printed before the log was open (stdout.log) and its
// data and config files.
type Node struct {
	// Addr is the node's host:port.
	Addr string
	// Dir is the node's own directory.
	Dir string
	// ID is the Redis Cluster node id; empty outside a cluster.
	ID string

	port int
	args []string // after the binary; the same on every (re)start
	// afterStart, if set, runs after every restart (settings that are not
	// saved in the node's files).
	afterStart func()

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and was reaped
}

// nodeStartTimeout bounds how long a starting node may take to answer PING.
const nodeStartTimeout = 10 * time.Second

// startNode starts a node in dir on free loopback ports. build gets the
// ports (nPorts of them, the first being the client port) and returns the
// arguments after the binary. A port taken by someone else between the
// check and the bind is retried with fresh ports.
func startNode(dir string, nPorts int, build func(ports []int) ([]string, error)) (*Node, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redistest: node dir: %w", err)
	}
	var lastErr error
	for range 3 {
		ports := make([]int, nPorts)
		for i := range ports {
			p, err := freePortAvoiding(ports[:i])
			if err != nil {
				return nil, err
			}
			ports[i] = p
		}
		args, err := build(ports)
		if err != nil {
			return nil, err
		}
		n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), Dir: dir, port: ports[0], args: args}
		err = n.launch()
		if err == nil {
			return n, nil
		}
		lastErr = err
		if !strings.Contains(n.LogTail(20), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

// freePortAvoiding returns a free loopback port that is not in taken (the
// ports already chosen for the same node).
func freePortAvoiding(taken []int) (int, error) {
	for range 20 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		clash := false
		for _, t := range taken {
			if p == t {
				clash = true
			}
		}
		if !clash {
			return p, nil
		}
	}
	return 0, errors.New("redistest: no free loopback port found")
}

// launch starts the process and waits until it answers PING. A process that
// exits or stays silent is reaped and reported with the end of its log.
func (n *Node) launch() error {
	bin, err := exec.LookPath(Binary())
	if err != nil {
		return fmt.Errorf("redis-server not found on PATH: install it (Debian: apt-get install -y redis-server) or run `make test`, which installs it: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(n.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	cmd := exec.Command(bin, n.args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("redistest: start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	switch awaitPing(n.Addr, done, nodeStartTimeout) {
	case nil:
		return nil
	case errExited:
		n.reaped(done)
		return fmt.Errorf("redistest: redis-server on %s exited at start; its log ends with:\n%s", n.Addr, n.LogTail(20))
	default:
		n.Kill()
		return fmt.Errorf("redistest: redis-server on %s did not answer PING within %v; its log ends with:\n%s", n.Addr, nodeStartTimeout, n.LogTail(20))
	}
}

// reaped forgets a process that exited by itself.
func (n *Node) reaped(done chan struct{}) {
	n.mu.Lock()
	if n.done == done {
		n.cmd, n.done = nil, nil
	}
	n.mu.Unlock()
}

// PID is the process id, 0 when the node is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	select {
	case <-n.done:
		return 0
	default:
		return n.cmd.Process.Pid
	}
}

// Running reports whether the process is alive.
func (n *Node) Running() bool { return n.PID() != 0 }

// Kill stops the node with SIGKILL, as a crash would, and reaps it.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, 0) }

// Stop shuts the node down (SIGTERM, then SIGKILL after 5 s) and reaps it.
func (n *Node) Stop() { n.signal(syscall.SIGTERM, 5*time.Second) }

func (n *Node) signal(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	<-done
}

// Restart starts a stopped or killed node again on the same port and
// directory (a cluster node keeps its identity through nodes.conf).
func (n *Node) Restart() error {
	n.Kill()
	if err := n.launch(); err != nil {
		return err
	}
	if n.afterStart != nil {
		n.afterStart()
	}
	return nil
}

// LogTail returns the last lines of the node's log files.
func (n *Node) LogTail(lines int) string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "redis.log"} {
		raw, err := os.ReadFile(filepath.Join(n.Dir, name))
		if err != nil || len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		ls := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(&b, "--- %s %s\n%s\n", n.Addr, name, strings.Join(ls, "\n"))
	}
	return b.String()
}

// logArgs are the arguments every node gets: loopback only, its log in its
// directory, no persistence (tests never restart from disk unless asked).
func logArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--daemonize", "no",
		"--loglevel", "notice",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
}
