package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// group is what a Cluster and a SentinelSet share: a set of nodes in one
// temporary directory.
type group interface {
	Nodes() []*Node
	Logs() string
	Stop()
}

// launchGroup runs start within ClusterStartTimeout; when it fails, it stops
// every node started so far and returns the error with their logs.
func launchGroup(g group, start func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), ClusterStartTimeout)
	defer cancel()
	if err := start(ctx); err != nil {
		logs := g.Logs()
		g.Stop()
		return fmt.Errorf("%w\nnode logs:\n%s", err, logs)
	}
	return nil
}

// cleanupGroup prints g's logs if tb failed and stops g when tb ends.
func cleanupGroup(tb testing.TB, what string, g group) {
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s node logs:\n%s", what, g.Logs())
		}
		g.Stop()
	})
}

// stopGroup stops nodes, all at once, and removes dir.
func stopGroup(nodes []*Node, dir string) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	wg.Wait()
	_ = os.RemoveAll(dir)
}

// groupLogs is the end of every node's log.
func groupLogs(nodes []*Node) string {
	var b strings.Builder
	for _, n := range nodes {
		b.WriteString(n.LogTail(40))
	}
	return b.String()
}
