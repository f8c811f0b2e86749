// Package topology holds baton's tests on real Redis topologies, behind the
// build tag topology (make test/topology): a Redis Cluster of 3 masters and
// 3 replicas, and a Sentinel set of a master, a replica and 3 sentinels,
// both started once for the run by internal/redistest and reached through
// the REDIS_URL forms users configure (redis-cluster://h1:p1,...,
// redis-sentinel://h1:p1,.../0?master=NAME).
//
// Every feature test runs on both topologies at once, as the subtests
// cluster and sentinel; the tests themselves run one after another, so a
// test owns its topology while it runs (its own queue, ids and keys, and no
// other test's workers on it).
package topology
