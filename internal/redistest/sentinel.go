package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Sentinel on loopback.
//
// The sentinels are redis-server processes started with --sentinel: every
// redis-server binary has the Sentinel mode built in, so Debian's
// redis-sentinel package (a symlink, a config file and a system service) is
// not needed.

// Defaults of SentinelOptions.
const (
	SentinelMasterNameDefault      = "baton"
	SentinelCountDefault           = 3
	SentinelReplicasDefault        = 1
	SentinelDownAfterDefault       = time.Second
	SentinelFailoverTimeoutDefault = 3 * time.Second
)

// SentinelOptions configure StartSentinel. The zero value is valid.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor the master under.
	// Defaults to "baton".
	MasterName string
	// Sentinels is the number of sentinels. Defaults to 3.
	Sentinels int
	// Quorum is how many sentinels must agree that the master is down.
	// Defaults to a majority of Sentinels (2 of 3).
	Quorum int
	// Replicas is the number of replicas of the master. Defaults to 1.
	Replicas int
	// DownAfter is down-after-milliseconds: how long the master may not
	// answer before a sentinel calls it down. Defaults to 1s; tests that
	// never kill the master may want more, so that a busy machine does not
	// fail it over.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout; a failover attempt that did not
	// elect a leader is retried after twice this. Defaults to 3s.
	FailoverTimeout time.Duration
}

func (o SentinelOptions) withDefaults() SentinelOptions {
	if o.MasterName == "" {
		o.MasterName = SentinelMasterNameDefault
	}
	if o.Sentinels <= 0 {
		o.Sentinels = SentinelCountDefault
	}
	if o.Quorum <= 0 {
		o.Quorum = o.Sentinels/2 + 1
	}
	if o.Replicas <= 0 {
		o.Replicas = SentinelReplicasDefault
	}
	if o.DownAfter <= 0 {
		o.DownAfter = SentinelDownAfterDefault
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = SentinelFailoverTimeoutDefault
	}
	return o
}

// SentinelSet is a running master, its replicas and the sentinels that
// watch them, all redis-server child processes.
type SentinelSet struct {
	// Name is the master's name for the sentinels (?master=NAME).
	Name string
	// Servers are the data nodes: Servers[0] is the initial master, the
	// others its replicas. After a failover ask MasterAddr.
	Servers []*Node
	// Sentinels are the sentinels.
	Sentinels []*Node

	opts SentinelOptions
	dir  string
}

// StartSentinel starts a master, its replicas and the sentinels, and
// returns once every sentinel names the master, knows every replica and
// every other sentinel, and confirms that a failover could be authorised.
// Stop it with Stop.
func StartSentinel(opts SentinelOptions) (*SentinelSet, error) {
	opts = opts.withDefaults()
	dir, err := os.MkdirTemp("", "baton-sentinel-*")
	if err != nil {
		return nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	s := &SentinelSet{Name: opts.MasterName, opts: opts, dir: dir}
	if err := launchGroup(s, s.start); err != nil {
		return nil, err
	}
	return s, nil
}

// MustStartSentinel starts a sentinel set for tb, prints its logs if tb
// failed, and stops it when tb ends.
func MustStartSentinel(tb testing.TB, opts SentinelOptions) *SentinelSet {
	tb.Helper()
	s, err := StartSentinel(opts)
	if err != nil {
		tb.Fatal(err)
	}
	cleanupGroup(tb, "sentinel set", s)
	return s
}

func (s *SentinelSet) start(ctx context.Context) error {
	dataArgs := func(dir string, port int) []string {
		return append(logArgs(port, dir), "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
	}
	master, err := startNode(filepath.Join(s.dir, "data0"), 1, func(p []int) ([]string, error) {
		return dataArgs(filepath.Join(s.dir, "data0"), p[0]), nil
	})
	if err != nil {
		return err
	}
	s.Servers = append(s.Servers, master)
	for i := 1; i <= s.opts.Replicas; i++ {
		dir := filepath.Join(s.dir, fmt.Sprintf("data%d", i))
		n, err := startNode(dir, 1, func(p []int) ([]string, error) {
			return append(dataArgs(dir, p[0]), "--replicaof", "127.0.0.1", strconv.Itoa(master.port)), nil
		})
		if err != nil {
			return err
		}
		s.Servers = append(s.Servers, n)
	}
	// The sentinels learn of the replicas from the master's INFO: start
	// them once the replicas are attached.
	if err := waitCond(ctx, "the replicas in sync", func(ctx context.Context) error {
		for _, n := range s.Servers {
			if err := replicationSynced(ctx, n.Addr, s.opts.Replicas); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for i := range s.opts.Sentinels {
		dir := filepath.Join(s.dir, fmt.Sprintf("sentinel%d", i))
		n, err := startNode(dir, 1, func(p []int) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			lines := []string{
				"port " + strconv.Itoa(p[0]),
				"bind 127.0.0.1",
				"daemonize no",
				fmt.Sprintf("dir %q", dir),
				fmt.Sprintf("logfile %q", filepath.Join(dir, "redis.log")),
				"loglevel notice",
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", s.Name, master.port, s.opts.Quorum),
				fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.Name, s.opts.DownAfter.Milliseconds()),
				fmt.Sprintf("sentinel failover-timeout %s %d", s.Name, s.opts.FailoverTimeout.Milliseconds()),
				fmt.Sprintf("sentinel parallel-syncs %s 1", s.Name),
			}
			// Sentinel rewrites its config file: it must be writable.
			if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				return nil, fmt.Errorf("redistest: sentinel config: %w", err)
			}
			return []string{conf, "--sentinel"}, nil
		})
		if err != nil {
			return err
		}
		s.Sentinels = append(s.Sentinels, n)
		// Sentinel's own periods are for production: INFO every 10 s (how
		// it learns of replicas and of a restarted old master), hello
		// messages every 2 s, a 30 s pause after a stall. Shorten them
		// (SENTINEL DEBUG, Redis ≥ 7.0; older servers keep the defaults),
		// again after every restart: they are not saved.
		n.afterStart = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = adminDo(ctx, n.Addr, "sentinel", "debug", "info-period", 1000, "publish-period", 500, "tilt-period", 5000).Err()
		}
		n.afterStart()
	}
	return s.WaitHealthy(ctx)
}

// SentinelAddrs are the sentinels' addresses.
func (s *SentinelSet) SentinelAddrs() []string {
	var out []string
	for _, n := range s.Sentinels {
		out = append(out, n.Addr)
	}
	return out
}

// URL is the set as a baton REDIS_URL for database db:
// redis-sentinel://h1:p1,h2:p2,h3:p3/db?master=NAME.
func (s *SentinelSet) URL(db int) string {
	return fmt.Sprintf("redis-sentinel://%s/%d?master=%s", strings.Join(s.SentinelAddrs(), ","), db, s.Name)
}

// NewClient returns a failover client (it asks the sentinels for the
// master, and follows a failover) with opts (nil for go-redis defaults)
// otherwise. The caller closes it.
func (s *SentinelSet) NewClient(opts *redis.FailoverOptions) *redis.Client {
	var o redis.FailoverOptions
	if opts != nil {
		o = *opts
	}
	o.MasterName, o.SentinelAddrs = s.Name, s.SentinelAddrs()
	return redis.NewFailoverClient(&o)
}

// Client returns a failover client of database db, closed when tb ends.
func (s *SentinelSet) Client(tb testing.TB, db int) *redis.Client {
	tb.Helper()
	rdb := s.NewClient(&redis.FailoverOptions{DB: db})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Server returns the data node listening on addr, or nil.
func (s *SentinelSet) Server(addr string) *Node {
	for _, n := range s.Servers {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// MasterAddr returns the master's address as every running sentinel names
// it; an error if they disagree or cannot answer.
func (s *SentinelSet) MasterAddr(ctx context.Context) (string, error) {
	var addr string
	for _, n := range s.Sentinels {
		if !n.Running() {
			continue
		}
		hp, err := adminDo(ctx, n.Addr, "sentinel", "get-master-addr-by-name", s.Name).StringSlice()
		if err != nil {
			return "", fmt.Errorf("redistest: sentinel %s: get-master-addr-by-name %s: %w", n.Addr, s.Name, err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("redistest: sentinel %s: no master named %s", n.Addr, s.Name)
		}
		a := hp[0] + ":" + hp[1]
		if addr != "" && a != addr {
			return "", fmt.Errorf("redistest: sentinels disagree on the master: %s and %s", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return "", errors.New("redistest: no sentinel is running")
	}
	return addr, nil
}

// KillMaster SIGKILLs the current master (as the sentinels name it) and
// returns its address. WaitFailover waits for its replacement.
func (s *SentinelSet) KillMaster(ctx context.Context) (string, error) {
	addr, err := s.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	n := s.Server(addr)
	if n == nil || !n.Running() {
		return "", fmt.Errorf("redistest: the master %s is not a running node of this set", addr)
	}
	n.Kill()
	return addr, nil
}

// WaitFailover waits until every running sentinel names a new master other
// than old, and that node says it is a master; it returns its address.
func (s *SentinelSet) WaitFailover(ctx context.Context, old string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var addr string
	err := waitCond(ctx, "the sentinels to fail over from "+old, func(ctx context.Context) error {
		a, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("the sentinels still name %s", old)
		}
		role, err := adminDo(ctx, a, "role").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s does not say it is a master yet (%v)", a, role)
		}
		addr = a
		return nil
	})
	return addr, err
}

// WaitHealthy waits until every node runs, the replicas are in sync with
// the master, and every sentinel names that master, sees every replica up,
// knows every other sentinel and confirms a failover could be authorised
// (SENTINEL CKQUORUM).
func (s *SentinelSet) WaitHealthy(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	return waitCond(ctx, "a healthy sentinel set", func(ctx context.Context) error {
		for _, n := range s.Nodes() {
			if !n.Running() {
				return fmt.Errorf("%s is not running", n.Addr)
			}
		}
		master, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		for _, n := range s.Servers {
			if err := replicationSynced(ctx, n.Addr, s.opts.Replicas); err != nil {
				return err
			}
			if role, _ := adminDo(ctx, n.Addr, "role").Slice(); (n.Addr == master) != (len(role) > 0 && role[0] == "master") {
				return fmt.Errorf("the sentinels name %s the master, but %s says it is %v", master, n.Addr, role)
			}
		}
		for _, sn := range s.Sentinels {
			if err := sentinelSees(ctx, sn.Addr, s.Name, s.opts.Replicas, s.opts.Sentinels-1); err != nil {
				return err
			}
		}
		return nil
	})
}

// sentinelSees checks that the sentinel at addr sees replicas replicas of
// master name up and linked, others other sentinels up, and a quorum.
func sentinelSees(ctx context.Context, addr, name string, replicas, others int) error {
	reps, err := sentinelTable(ctx, addr, "replicas", name)
	if err != nil {
		return err
	}
	up := 0
	for _, r := range reps {
		if r["flags"] == "slave" && r["master-link-status"] == "ok" {
			up++
		}
	}
	if up != replicas {
		return fmt.Errorf("sentinel %s sees %d replicas of %s up, want %d: %v", addr, up, name, replicas, reps)
	}
	sens, err := sentinelTable(ctx, addr, "sentinels", name)
	if err != nil {
		return err
	}
	up = 0
	for _, r := range sens {
		if r["flags"] == "sentinel" {
			up++
		}
	}
	if up != others {
		return fmt.Errorf("sentinel %s knows %d other sentinels up, want %d", addr, up, others)
	}
	if err := adminDo(ctx, addr, "sentinel", "ckquorum", name).Err(); err != nil {
		return fmt.Errorf("sentinel %s: ckquorum: %w", addr, err)
	}
	return nil
}

// sentinelTable runs SENTINEL <what> name (replicas, sentinels) and returns
// one field → value map per entry.
func sentinelTable(ctx context.Context, addr, what, name string) ([]map[string]string, error) {
	rows, err := adminDo(ctx, addr, "sentinel", what, name).Slice()
	if err != nil {
		return nil, fmt.Errorf("sentinel %s: %s %s: %w", addr, what, name, err)
	}
	var out []map[string]string
	for _, row := range rows {
		m := map[string]string{}
		switch r := row.(type) {
		case []any: // RESP2: a flat list of fields and values
			for i := 0; i+1 < len(r); i += 2 {
				m[fmt.Sprint(r[i])] = fmt.Sprint(r[i+1])
			}
		case map[any]any: // RESP3
			for k, v := range r {
				m[fmt.Sprint(k)] = fmt.Sprint(v)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Nodes are the data nodes, then the sentinels.
func (s *SentinelSet) Nodes() []*Node {
	return append(append([]*Node(nil), s.Servers...), s.Sentinels...)
}

// Stop stops every node and removes the set's directory.
func (s *SentinelSet) Stop() { stopGroup(s.Nodes(), s.dir) }

// Logs returns the end of every node's log, for a failed test.
func (s *SentinelSet) Logs() string { return groupLogs(s.Nodes()) }
