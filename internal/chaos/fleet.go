package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// fleet keeps N worker processes running: the chaos loop kills or stops one
// and starts its replacement at once; a worker that exits on its own is
// noted and restarted by its supervisor.
type fleet struct {
	bin  string
	args []string
	dir  string

	mu         sync.Mutex
	slots      []*slot
	unexpected []string // workers that exited without being told to
	stopped    bool
}

type slot struct {
	name    string
	cmd     *exec.Cmd
	pid     int
	done    chan struct{}
	told    bool // the exit was asked for (kill, term, stop)
	started time.Time
	n       int // processes this slot has run
}

func newFleet(bin, dir string, n int, args ...string) (*fleet, error) {
	f := &fleet{bin: bin, args: args, dir: dir}
	for i := range n {
		s := &slot{name: fmt.Sprintf("w%d", i+1)}
		f.slots = append(f.slots, s)
		if err := f.start(s); err != nil {
			f.stopAll(time.Second)
			return nil, err
		}
	}
	return f, nil
}

// start launches a process in s. Caller holds no lock.
func (f *fleet) start(s *slot) error {
	s.n++
	logf, err := os.OpenFile(filepath.Join(f.dir, fmt.Sprintf("%s.%d.log", s.name, s.n)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(f.bin, append([]string{"worker"}, f.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start worker %s: %w", s.name, err)
	}
	done := make(chan struct{})
	f.mu.Lock()
	s.cmd, s.pid, s.done, s.told, s.started = cmd, cmd.Process.Pid, done, false, time.Now()
	f.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
		f.mu.Lock()
		unexpected := !s.told && !f.stopped && s.cmd == cmd
		if unexpected {
			f.unexpected = append(f.unexpected, fmt.Sprintf("%s pid %d: %v", s.name, cmd.Process.Pid, cmd.ProcessState))
		}
		f.mu.Unlock()
		if unexpected {
			time.Sleep(200 * time.Millisecond)
			_ = f.start(s)
		}
	}()
	return nil
}

// signal sends sig to slot i's process, waits for it to exit (up to
// timeout, then SIGKILL), and starts a replacement. It returns the pid
// signalled and how long the process took to exit.
func (f *fleet) signal(i int, sig syscall.Signal, timeout time.Duration) (int, time.Duration, error) {
	f.mu.Lock()
	s := f.slots[i]
	s.told = true
	cmd, done, pid := s.cmd, s.done, s.pid
	f.mu.Unlock()
	t0 := time.Now()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
	}
	took := time.Since(t0)
	return pid, took, f.start(s)
}

// stopAll SIGTERMs every worker and waits for them (SIGKILL after timeout).
func (f *fleet) stopAll(timeout time.Duration) {
	f.mu.Lock()
	f.stopped = true
	var live []*slot
	for _, s := range f.slots {
		if s.cmd != nil {
			s.told = true
			live = append(live, s)
		}
	}
	f.mu.Unlock()
	for _, s := range live {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range live {
		select {
		case <-s.done:
		case <-time.After(timeout):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
}

func (f *fleet) unexpectedExits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.unexpected...)
}
