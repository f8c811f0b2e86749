package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster on loopback.
//
// The cluster is formed from Go with the cluster commands (CLUSTER
// SET-CONFIG-EPOCH, ADDSLOTSRANGE, MEET, REPLICATE) rather than with
// `redis-cli --cluster create`: it needs no second binary, the pairing of
// replicas with masters is known (redis-cli reshuffles it to spread replicas
// over hosts, which on one host it cannot), every step's error reaches the
// caller as an error, and nothing sleeps a fixed second between steps. Each
// node gets its cluster bus port explicitly (cluster-port, Redis ≥ 7.0)
// because the default, port+10000, may be taken or beyond 65535.

// ClusterSlots is the number of hash slots of Redis Cluster.
const ClusterSlots = 16384

// Defaults of ClusterOptions.
const (
	ClusterMastersDefault     = 3
	ClusterReplicasDefault    = 1
	ClusterNodeTimeoutDefault = 2 * time.Second
	// ClusterStartTimeout bounds forming a cluster and every Wait* call
	// that is given a context without a deadline.
	ClusterStartTimeout = 60 * time.Second
)

// ClusterOptions configure StartCluster. The zero value is valid.
type ClusterOptions struct {
	// Masters is the number of masters, each owning an equal share of the
	// slots. Defaults to 3.
	Masters int
	// Replicas is the number of replicas per master. Defaults to 1.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before it is failed over. Defaults to 2s, short enough for
	// tests and long enough that a busy 2-core machine does not fail over a
	// healthy node. Tests that never kill a node may want more.
	NodeTimeout time.Duration
}

func (o ClusterOptions) withDefaults() ClusterOptions {
	if o.Masters <= 0 {
		o.Masters = ClusterMastersDefault
	}
	if o.Replicas <= 0 {
		o.Replicas = ClusterReplicasDefault
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = ClusterNodeTimeoutDefault
	}
	return o
}

// Cluster is a running Redis Cluster of redis-server child processes.
type Cluster struct {
	// Masters are the initial masters: Masters[i] owns the i-th share of the
	// slots. After a failover a master may be a replica, and a replica a
	// master: ask MasterOf.
	Masters []*Node
	// Replicas are the initial replicas: Replicas[i] replicates
	// Masters[i/Replicas-per-master].
	Replicas []*Node

	opts ClusterOptions
	dir  string

	mu     sync.Mutex
	killed map[string]int // address of a killed master → one slot it served
}

// StartCluster starts a cluster and returns once it is formed: every slot
// is served, every node knows every other, and every replica is in sync
// with its master. Stop it with Stop.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	opts = opts.withDefaults()
	dir, err := os.MkdirTemp("", "baton-cluster-*")
	if err != nil {
		return nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	c := &Cluster{opts: opts, dir: dir, killed: map[string]int{}}
	if err := launchGroup(c, c.start); err != nil {
		return nil, err
	}
	return c, nil
}

// MustStartCluster starts a cluster for tb, prints its logs if tb failed,
// and stops it when tb ends.
func MustStartCluster(tb testing.TB, opts ClusterOptions) *Cluster {
	tb.Helper()
	c, err := StartCluster(opts)
	if err != nil {
		tb.Fatal(err)
	}
	cleanupGroup(tb, "cluster", c)
	return c
}

func (c *Cluster) start(ctx context.Context) error {
	total := c.opts.Masters * (1 + c.opts.Replicas)
	for i := range total {
		n, err := startNode(filepath.Join(c.dir, fmt.Sprintf("node%d", i)), 2, func(p []int) ([]string, error) {
			dir := filepath.Join(c.dir, fmt.Sprintf("node%d", i))
			return append(logArgs(p[0], dir),
				"--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(p[1]),
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
				// A replica may always take over, however long its link was down.
				"--cluster-replica-validity-factor", "0",
				"--save", "", "--appendonly", "no",
				"--repl-diskless-sync-delay", "0",
			), nil
		})
		if err != nil {
			return err
		}
		if i < c.opts.Masters {
			c.Masters = append(c.Masters, n)
		} else {
			c.Replicas = append(c.Replicas, n)
		}
	}
	nodes := c.Nodes()
	for _, n := range nodes {
		id, err := adminDo(ctx, n.Addr, "cluster", "myid").Text()
		if err != nil {
			return fmt.Errorf("redistest: cluster myid on %s: %w", n.Addr, err)
		}
		n.ID = id
	}
	// Distinct config epochs up front, as redis-cli does, so the nodes need
	// not resolve epoch collisions before a failover can be voted.
	for i, m := range c.Masters {
		lo := i * ClusterSlots / c.opts.Masters
		hi := (i+1)*ClusterSlots/c.opts.Masters - 1
		if err := adminDo(ctx, m.Addr, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			return fmt.Errorf("redistest: cluster set-config-epoch on %s: %w", m.Addr, err)
		}
		if err := adminDo(ctx, m.Addr, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
			return fmt.Errorf("redistest: cluster addslotsrange %d %d on %s (Redis ≥ 7.0 is needed): %w", lo, hi, m.Addr, err)
		}
	}
	for _, n := range nodes[1:] {
		bus, err := busPort(n)
		if err != nil {
			return err
		}
		if err := adminDo(ctx, nodes[0].Addr, "cluster", "meet", "127.0.0.1", n.port, bus).Err(); err != nil {
			return fmt.Errorf("redistest: cluster meet %s: %w", n.Addr, err)
		}
	}
	if err := waitCond(ctx, "every cluster node knows every other", func(ctx context.Context) error {
		for _, n := range nodes {
			lines, err := clusterNodes(ctx, n.Addr)
			if err != nil {
				return err
			}
			if len(lines) != len(nodes) {
				return fmt.Errorf("%s knows %d nodes of %d", n.Addr, len(lines), len(nodes))
			}
			for _, l := range lines {
				if l.has("handshake") || l.has("noaddr") || l.link != "connected" {
					return fmt.Errorf("%s sees %s as %s %s", n.Addr, l.addr, strings.Join(l.flags, ","), l.link)
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for i, r := range c.Replicas {
		m := c.Masters[i/c.opts.Replicas]
		if err := adminDo(ctx, r.Addr, "cluster", "replicate", m.ID).Err(); err != nil {
			return fmt.Errorf("redistest: cluster replicate %s → %s: %w", r.Addr, m.Addr, err)
		}
	}
	return c.WaitHealthy(ctx)
}

// busPort is the node's cluster bus port, read from its arguments.
func busPort(n *Node) (int, error) {
	for i, a := range n.args {
		if a == "--cluster-port" && i+1 < len(n.args) {
			return strconv.Atoi(n.args[i+1])
		}
	}
	return 0, fmt.Errorf("redistest: node %s has no cluster port", n.Addr)
}

// Nodes are all nodes, initial masters first.
func (c *Cluster) Nodes() []*Node {
	return append(append([]*Node(nil), c.Masters...), c.Replicas...)
}

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *Node {
	for _, n := range c.Nodes() {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Addrs are the addresses of all nodes, initial masters first.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.Addr)
	}
	return out
}

// URL is the cluster as a baton REDIS_URL: redis-cluster://h1:p1,h2:p2,...
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// NewClient returns a cluster client on every node, with opts (nil for
// go-redis defaults) otherwise. The caller closes it.
func (c *Cluster) NewClient(opts *redis.ClusterOptions) *redis.ClusterClient {
	var o redis.ClusterOptions
	if opts != nil {
		o = *opts
	}
	o.Addrs = c.Addrs()
	return redis.NewClusterClient(&o)
}

// Client returns a cluster client closed when tb ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rdb := c.NewClient(nil)
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Slot is the hash slot of key, as the cluster computes it.
func (c *Cluster) Slot(ctx context.Context, key string) (int, error) {
	addr, err := c.liveAddr()
	if err != nil {
		return 0, err
	}
	n, err := adminDo(ctx, addr, "cluster", "keyslot", key).Int()
	if err != nil {
		return 0, fmt.Errorf("redistest: cluster keyslot: %w", err)
	}
	return n, nil
}

// MasterOf returns the address of the master serving key, as a live node
// sees it.
func (c *Cluster) MasterOf(ctx context.Context, key string) (string, error) {
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return "", err
	}
	return c.MasterOfSlot(ctx, slot)
}

// MasterOfSlot returns the address of the master serving slot, as a live
// node sees it.
func (c *Cluster) MasterOfSlot(ctx context.Context, slot int) (string, error) {
	addr, err := c.liveAddr()
	if err != nil {
		return "", err
	}
	return masterOfSlot(ctx, addr, slot)
}

func masterOfSlot(ctx context.Context, via string, slot int) (string, error) {
	ranges, err := adminClient(via, func(r *redis.Client) ([]redis.ClusterSlot, error) {
		return r.ClusterSlots(ctx).Result()
	})
	if err != nil {
		return "", fmt.Errorf("redistest: cluster slots on %s: %w", via, err)
	}
	for _, r := range ranges {
		if r.Start <= slot && slot <= r.End && len(r.Nodes) > 0 {
			return r.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("redistest: no node of the cluster serves slot %d (as %s sees it)", slot, via)
}

func (c *Cluster) liveAddr() (string, error) {
	for _, n := range c.Nodes() {
		if n.Running() {
			return n.Addr, nil
		}
	}
	return "", errors.New("redistest: no cluster node is running")
}

// KillMaster SIGKILLs the node at addr, which must currently be a master
// serving slots: a crash, as far as the cluster can tell. Its replica takes
// over after NodeTimeout; WaitFailover waits for that.
func (c *Cluster) KillMaster(ctx context.Context, addr string) error {
	n := c.Node(addr)
	if n == nil {
		return fmt.Errorf("redistest: no cluster node at %s", addr)
	}
	if !n.Running() {
		return fmt.Errorf("redistest: cluster node %s is not running", addr)
	}
	lines, err := clusterNodes(ctx, addr)
	if err != nil {
		return err
	}
	slot := -1
	for _, l := range lines {
		if l.has("myself") && l.has("master") && len(l.slots) > 0 {
			slot = l.slots[0]
		}
	}
	if slot < 0 {
		return fmt.Errorf("redistest: cluster node %s is not a master serving slots", addr)
	}
	c.mu.Lock()
	c.killed[addr] = slot
	c.mu.Unlock()
	n.Kill()
	return nil
}

// WaitFailover waits until the slots of killed, a master stopped by
// KillMaster, are served by another node that every live node agrees on
// and that says it is a master, with the cluster state ok on every live
// node; it returns that node's address.
func (c *Cluster) WaitFailover(ctx context.Context, killed string) (string, error) {
	c.mu.Lock()
	slot, ok := c.killed[killed]
	c.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("redistest: %s was not killed with KillMaster", killed)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var promoted string
	err := waitCond(ctx, "failover of "+killed, func(ctx context.Context) error {
		promoted = ""
		for _, n := range c.Nodes() {
			if !n.Running() {
				continue
			}
			if err := clusterOK(ctx, n.Addr); err != nil {
				return err
			}
			m, err := masterOfSlot(ctx, n.Addr, slot)
			if err != nil {
				return err
			}
			if m == killed {
				return fmt.Errorf("%s still routes slot %d to the killed %s", n.Addr, slot, killed)
			}
			if promoted != "" && m != promoted {
				return fmt.Errorf("nodes disagree on the master of slot %d: %s and %s", slot, promoted, m)
			}
			promoted = m
		}
		role, err := adminDo(ctx, promoted, "role").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s does not say it is a master yet (%v)", promoted, role)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return promoted, nil
}

// WaitHealthy waits until every node runs and the cluster is whole: state
// ok with every slot served on every node, every node sees every other as
// connected and agrees on who is master, and every replica is in sync.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	nodes := c.Nodes()
	return waitCond(ctx, "a healthy cluster", func(ctx context.Context) error {
		for _, n := range nodes {
			if !n.Running() {
				return fmt.Errorf("%s is not running", n.Addr)
			}
		}
		var masters []string
		for _, n := range nodes {
			if err := clusterOK(ctx, n.Addr); err != nil {
				return err
			}
			lines, err := clusterNodes(ctx, n.Addr)
			if err != nil {
				return err
			}
			var ms []string
			for _, l := range lines {
				switch {
				case l.has("fail") || l.has("fail?") || l.has("handshake") || l.link != "connected":
					return fmt.Errorf("%s sees %s as %s %s", n.Addr, l.addr, strings.Join(l.flags, ","), l.link)
				case l.has("master") && len(l.slots) > 0:
					ms = append(ms, l.addr)
				case l.has("slave"):
				default:
					return fmt.Errorf("%s sees %s as %s without slots", n.Addr, l.addr, strings.Join(l.flags, ","))
				}
			}
			slices.Sort(ms)
			if len(ms) != c.opts.Masters {
				return fmt.Errorf("%s sees %d masters serving slots, want %d", n.Addr, len(ms), c.opts.Masters)
			}
			if masters != nil && strings.Join(ms, ",") != strings.Join(masters, ",") {
				return fmt.Errorf("nodes disagree on the masters: %v and %v", masters, ms)
			}
			masters = ms
		}
		for _, n := range nodes {
			if err := replicationSynced(ctx, n.Addr, c.opts.Replicas); err != nil {
				return err
			}
		}
		return nil
	})
}

// Stop stops every node and removes the cluster's directory.
func (c *Cluster) Stop() { stopGroup(c.Nodes(), c.dir) }

// Logs returns the end of every node's log, for a failed test.
func (c *Cluster) Logs() string { return groupLogs(c.Nodes()) }

// clusterOK checks CLUSTER INFO on addr: state ok, every slot served.
func clusterOK(ctx context.Context, addr string) error {
	raw, err := adminDo(ctx, addr, "cluster", "info").Text()
	if err != nil {
		return fmt.Errorf("cluster info on %s: %w", addr, err)
	}
	info := parseInfo(raw)
	if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != strconv.Itoa(ClusterSlots) {
		return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", addr, info["cluster_state"], info["cluster_slots_ok"])
	}
	return nil
}

// replicationSynced checks INFO replication on addr: a master has want
// replicas online; a replica's link is up and not syncing.
func replicationSynced(ctx context.Context, addr string, want int) error {
	raw, err := adminDo(ctx, addr, "info", "replication").Text()
	if err != nil {
		return fmt.Errorf("info replication on %s: %w", addr, err)
	}
	info := parseInfo(raw)
	switch info["role"] {
	case "master":
		online := 0
		for k, v := range info {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
				online++
			}
		}
		if online != want {
			return fmt.Errorf("master %s has %d replicas online, want %d", addr, online, want)
		}
	case "slave":
		if info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0" {
			return fmt.Errorf("replica %s: master_link_status:%s master_sync_in_progress:%s", addr, info["master_link_status"], info["master_sync_in_progress"])
		}
	default:
		return fmt.Errorf("%s has role %q", addr, info["role"])
	}
	return nil
}

// nodeLine is one line of CLUSTER NODES.
type nodeLine struct {
	id, addr string
	flags    []string
	master   string // id of its master, "-" for a master
	link     string
	slots    []int // first slot of each range served
}

func (l nodeLine) has(flag string) bool {
	for _, f := range l.flags {
		if f == flag {
			return true
		}
	}
	return false
}

func clusterNodes(ctx context.Context, addr string) ([]nodeLine, error) {
	raw, err := adminDo(ctx, addr, "cluster", "nodes").Text()
	if err != nil {
		return nil, fmt.Errorf("cluster nodes on %s: %w", addr, err)
	}
	var out []nodeLine
	for line := range strings.SplitSeq(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@")
		l := nodeLine{id: f[0], addr: a, flags: strings.Split(f[2], ","), master: f[3], link: f[7]}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated
			}
			lo, _, _ := strings.Cut(s, "-")
			if n, err := strconv.Atoi(lo); err == nil {
				l.slots = append(l.slots, n)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// parseInfo parses INFO or CLUSTER INFO output into field → value.
func parseInfo(raw string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(raw, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			out[k] = v
		}
	}
	return out
}
