package asynqx

import (
	"strings"
	"time"
)

// asynq v0.26.0's Redis layout, as its internal/base and internal/rdb
// packages write it. Everything here is pinned by pin_test.go: an asynq
// upgrade that changes a key, a script or its KEYS/ARGV layout fails that
// test, which says what to re-check.

// AsynqVersion is the asynq release whose private layout this package
// reproduces.
const AsynqVersion = "v0.26.0"

const (
	// LeaseDuration is asynq's lease: a dequeued task's entry in the lease
	// set expires this long after dequeue or the last heartbeat extension.
	LeaseDuration = 30 * time.Second
	// HeartbeatInterval is how often an asynq server lists its running
	// tasks (asynq:workers:{…}) and extends their leases.
	HeartbeatInterval = 5 * time.Second
	// statsTTL is how long asynq keeps a day's processed/failed counters.
	statsTTL = 90 * 24 * time.Hour
	// allQueues is the set of every queue name asynq knows.
	allQueues = "asynq:queues"
)

func queuePrefix(q string) string       { return "asynq:{" + q + "}:" }
func taskKeyPrefix(q string) string     { return queuePrefix(q) + "t:" }
func taskKey(q, id string) string       { return taskKeyPrefix(q) + id }
func pendingKey(q string) string        { return queuePrefix(q) + "pending" }
func activeKey(q string) string         { return queuePrefix(q) + "active" }
func leaseKey(q string) string          { return queuePrefix(q) + "lease" }
func pausedKey(q string) string         { return queuePrefix(q) + "paused" }
func scheduledKey(q string) string      { return queuePrefix(q) + "scheduled" }
func retryKey(q string) string          { return queuePrefix(q) + "retry" }
func archivedKey(q string) string       { return queuePrefix(q) + "archived" }
func completedKey(q string) string      { return queuePrefix(q) + "completed" }
func processedTotalKey(q string) string { return queuePrefix(q) + "processed" }
func failedTotalKey(q string) string    { return queuePrefix(q) + "failed" }
func processedKey(q string, t time.Time) string {
	return queuePrefix(q) + "processed:" + t.UTC().Format(time.DateOnly)
}
func failedKey(q string, t time.Time) string {
	return queuePrefix(q) + "failed:" + t.UTC().Format(time.DateOnly)
}

// queueOf is the queue name in a key of asynq's queue layout
// ("asynq:{q}:…"), or "" for any other key.
func queueOf(key string) string {
	rest, ok := strings.CutPrefix(key, "asynq:{")
	if !ok {
		return ""
	}
	q, _, ok := strings.Cut(rest, "}:")
	if !ok {
		return ""
	}
	return q
}

// scriptKind is one of asynq's Lua scripts, recognised by its SHA1.
type scriptKind uint8

const (
	kindOther scriptKind = iota
	kindDequeue
	kindDone
	kindDoneUnique
	kindMarkComplete
	kindMarkCompleteUnique
	kindRetry
	kindArchive
	kindRequeue
	kindServerState
	// Not intercepted; pinned because the fused script reproduces them.
	kindEnqueue
	kindSchedule
)

// asynqScripts maps the SHA1 of each asynq v0.26.0 script the hook knows to
// its kind. A script asynq changes gets a new SHA1 and is then simply not
// recognised: the hook passes it through, and the optimisation it carried
// is off (pin_test.go fails first).
var asynqScripts = map[string]scriptKind{
	"a8153319360adc71cdc370107f8ab9786f204765": kindDequeue,
	"1241eaa1c73409baaf1fea0c08d203a4911bda15": kindDone,
	"a2631c71357a54b4c3e7450b1757e7f3f49d6c81": kindDoneUnique,
	"117dca952700588e559c7ace20b925096d587974": kindMarkComplete,
	"ce6833ccce362a8c0ee53beee413341daf52e39c": kindMarkCompleteUnique,
	"65fa409c88198a681c53e0892d8276eca0145694": kindRetry,
	"9c3b1eb9947ce2ee5304ac013a0a365ec364fd2d": kindArchive,
	"f34cbfd11d1fc8019af55b50c447fc68eb8b29e5": kindRequeue,
	"3c8548ad44d0dfcfde50f07ea9271d77f656042c": kindServerState,
	"98d28b42650870a743450ffda9791e9e19c6991b": kindEnqueue,
	"8ce6b38a99b73194585c251eb3c2a89559f37a87": kindSchedule,
}

var kindNames = [...]string{
	kindOther: "other", kindDequeue: "dequeue", kindDone: "done", kindDoneUnique: "done (unique)",
	kindMarkComplete: "mark as complete", kindMarkCompleteUnique: "mark as complete (unique)",
	kindRetry: "retry", kindArchive: "archive", kindRequeue: "requeue",
	kindServerState: "write server state", kindEnqueue: "enqueue", kindSchedule: "schedule",
}

func (k scriptKind) String() string { return kindNames[k] }

// isAck: the script ends a task's active life (its ARGV[1] is the task id
// and its KEYS hold the queue's active list).
func (k scriptKind) isAck() bool {
	switch k {
	case kindDone, kindDoneUnique, kindMarkComplete, kindMarkCompleteUnique, kindRetry, kindArchive, kindRequeue:
		return true
	}
	return false
}

// scriptCall is an EVALSHA of a recognised asynq script, split into its
// parts: args is the command as go-redis holds it ("evalsha", sha,
// numkeys, KEYS…, ARGV…).
type scriptCall struct {
	kind scriptKind
	keys []string
	argv []any
}

// recognise returns the asynq script cmd runs, if any. Only EVALSHA is
// recognised: go-redis sends EVAL only after a NOSCRIPT reply, and that
// call passes through untouched.
func recognise(args []any) (scriptCall, bool) {
	if len(args) < 3 {
		return scriptCall{}, false
	}
	if name, _ := args[0].(string); name != "evalsha" {
		return scriptCall{}, false
	}
	sha, _ := args[1].(string)
	kind, ok := asynqScripts[sha]
	if !ok {
		return scriptCall{}, false
	}
	n, ok := args[2].(int)
	if !ok || n < 0 || 3+n > len(args) {
		return scriptCall{}, false
	}
	keys := make([]string, n)
	for i := range n {
		if keys[i], ok = args[3+i].(string); !ok {
			return scriptCall{}, false
		}
	}
	return scriptCall{kind: kind, keys: keys, argv: args[3+n:]}, true
}

// arg is ARGV[i] (1-based, as in Lua) as a string, "" when absent.
func (c scriptCall) arg(i int) string {
	if i < 1 || i > len(c.argv) {
		return ""
	}
	switch v := c.argv[i-1].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}
