//go:build topology

package topology_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/redistest"
)

// The topologies every test shares. No test kills a node of these: their
// failure timeouts are long, so a busy machine never fails over a healthy
// node in the middle of a feature test.
var (
	cluster  *redistest.Cluster
	sentinel *redistest.SentinelSet
)

// TestMain starts the shared cluster and sentinel set, runs the tests,
// prints the nodes' logs if any failed, stops every node, and then fails
// the run if a goroutine outlived the tests.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var wg sync.WaitGroup
	var errC, errS error
	wg.Add(2)
	go func() {
		defer wg.Done()
		cluster, errC = redistest.StartCluster(redistest.ClusterOptions{NodeTimeout: 5 * time.Second})
	}()
	go func() {
		defer wg.Done()
		sentinel, errS = redistest.StartSentinel(redistest.SentinelOptions{DownAfter: 5 * time.Second})
	}()
	wg.Wait()
	defer func() {
		if cluster != nil {
			cluster.Stop()
		}
		if sentinel != nil {
			sentinel.Stop()
		}
	}()
	if errC != nil || errS != nil {
		fmt.Fprintf(os.Stderr, "topology: could not start the shared topologies:\n%v\n%v\n", errC, errS)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "cluster node logs:\n%s\nsentinel set logs:\n%s\n", cluster.Logs(), sentinel.Logs())
	}
	cluster.Stop()
	sentinel.Stop()
	if code == 0 {
		if err := redistest.NoLeaks(3 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}
