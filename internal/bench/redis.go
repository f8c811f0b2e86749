package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

// poolSize is the go-redis pool of every client in the bench, baton's and
// asynq's alike: large enough that no worker waits for a connection.
const poolSize = 64

// redisEnv is one fresh redis-server (no AOF, no snapshots) for a workload.
type redisEnv struct {
	srv     *redistest.Server
	dir     string
	pid     int // 0 when it could not be found
	version string
	// observers are given to the baton workers of the run (Options.Metrics).
	observers []baton.Observer
}

func startRedis(ctx context.Context) (*redisEnv, error) {
	dir, err := os.MkdirTemp("", "baton-bench-*")
	if err != nil {
		return nil, fmt.Errorf("temp dir for redis-server: %w", err)
	}
	srv, err := redistest.Start(redistest.Options{Dir: dir})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	e := &redisEnv{srv: srv, dir: dir}
	e.pid = findRedisPID(srv.Addr)
	c := e.client()
	defer c.Close()
	if info, err := c.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				e.version = v
			}
		}
	}
	return e, nil
}

func (e *redisEnv) stop() {
	e.srv.Stop()
	_ = os.RemoveAll(e.dir)
}

// client is a new go-redis client on the server; the caller closes it.
func (e *redisEnv) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.srv.Addr, PoolSize: poolSize})
}

func (e *redisEnv) flush(ctx context.Context) error {
	c := e.client()
	defer c.Close()
	if err := c.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis at %s: %w", e.srv.Addr, err)
	}
	return nil
}

// findRedisPID finds the redis-server child of this process listening on
// addr's port: redistest does not expose the pid, so scan /proc for a child
// whose command line (redis rewrites it to "redis-server 127.0.0.1:PORT")
// names the port.
func findRedisPID(addr string) int {
	_, port, _ := strings.Cut(addr, ":")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	me := os.Getpid()
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		f := statFields(stat)
		if len(f) < 2 || f[1] != strconv.Itoa(me) { // f[0] is state, f[1] ppid
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.FieldsFunc(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})), func(r rune) bool { return r == ' ' || r == ':' })
		isRedis, hasPort := false, false
		for _, a := range args {
			isRedis = isRedis || strings.Contains(a, "redis")
			hasPort = hasPort || a == port
		}
		if isRedis && hasPort {
			return pid
		}
	}
	return 0
}

// statFields are the fields of /proc/<pid>/stat after "pid (comm)".
func statFields(stat []byte) []string {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// clockTicks is USER_HZ, 100 on every Linux Go supports.
const clockTicks = 100

// procCPU is the user+system CPU time a process has used.
func procCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, errors.New("redis-server pid unknown")
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := statFields(stat)
	// utime and stime are fields 14 and 15 of stat; f starts at field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// selfCPU is the user+system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
