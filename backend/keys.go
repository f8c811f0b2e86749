package backend

import (
	"fmt"
	"strings"
)

// Every Redis key baton writes is built here. Keys of one workflow share a
// {hash tag} (the workflow id) so multi-key scripts work on Redis Cluster.
// Canvas step ids have the form "<workflow id>.<n>"; the tag of an id is the
// part before its first '.', so a step's record lives in its workflow's slot.

const prefix = "baton:"

// Tag returns the hash tag of a task or workflow id.
func Tag(id string) string {
	if i := strings.IndexByte(id, '.'); i > 0 {
		return id[:i]
	}
	return id
}

// TaskKey is the hash holding one task's record.
func TaskKey(id string) string { return prefix + "task:{" + Tag(id) + "}:" + id }

// WorkflowKey is the hash holding one workflow's record. A workflow started
// from inside another ("<task id>.r", a task's replacement) shares its slot.
func WorkflowKey(wfID string) string {
	tag := Tag(wfID)
	return prefix + "wf:{" + tag + "}" + wfID[len(tag):]
}

// ChordKey is the hash collecting a chord's header results, field per index.
func ChordKey(wfID, chordID string) string { return prefix + "chord:{" + Tag(wfID) + "}:" + chordID }

// DoneChannel is the pub/sub channel a task's state changes are published on.
func DoneChannel(id string) string { return prefix + "done:" + id }

// WorkflowIndexKey is the sorted set of recent workflow ids, scored by
// creation time (unix ms), for listings.
const WorkflowIndexKey = prefix + "workflows"

// Flow control (limits.go). Every key of one limit shares the hash tag of
// the limit's name, so each script touches one slot on Redis Cluster; the
// key value (a host, a tenant, a model) comes after the tag.

// RateTATKey holds a rate limit's theoretical arrival time for one key.
func RateTATKey(name, key string) string { return prefix + "rate:{" + name + "}:tat:" + key }

// RateReservedKey is the sorted set of a rate limit's reservations for one
// key: member "<task id>/<attempt>", score the reserved time (unix ms).
func RateReservedKey(name, key string) string { return prefix + "rate:{" + name + "}:res:" + key }

// RatePauseKey holds when the pause an upstream asked for ends (unix ms).
func RatePauseKey(name, key string) string { return prefix + "rate:{" + name + "}:pause:" + key }

// RateKeysKey is the sorted set of a rate limit's key values, scored by
// their last use (unix ms).
func RateKeysKey(name string) string { return prefix + "rate:{" + name + "}:keys" }

// ConcHoldersKey is the sorted set of a concurrency limit's holders for one
// key: member the task id, score its lease expiry (unix ms).
func ConcHoldersKey(name, key string) string { return prefix + "conc:{" + name + "}:hold:" + key }

// ConcWaitersKey is the sorted set of tasks waiting for a slot: member
// "<queue> <asynq task id>", score when it last asked (unix ms).
func ConcWaitersKey(name, key string) string { return prefix + "conc:{" + name + "}:wait:" + key }

// ConcKeysKey is the sorted set of a concurrency limit's key values.
func ConcKeysKey(name string) string { return prefix + "conc:{" + name + "}:keys" }

// LimitsKey is the hash of the limit definitions workers enforce: field
// "<type>:<name>", value the definition as JSON.
const LimitsKey = prefix + "limits"

// The rule for ids that callers choose (a task's EnqueueOpts.ID, a
// workflow's SubmitOpts.ID, the CLI's --id), one for all of them. '.' is
// reserved: baton names a workflow's steps "<workflow>.<n>" and keys a
// record under the part of its id before the first '.', so a chosen id with
// a '.' could be a step's. '{' and '}' delimit Redis Cluster hash tags.
// ':' is allowed for namespaces such as "tenant:42".
const (
	// IDRule is the rule in words, for help texts and errors.
	IDRule = "1 to 200 ASCII letters, digits, '-', '_' and ':' ('.' is reserved for workflow steps)"
	// IDMaxLen is the longest id a caller may choose, in bytes.
	IDMaxLen = 200
)

// ValidID checks a caller-chosen task or workflow id against IDRule.
func ValidID(id string) error {
	if id == "" || len(id) > IDMaxLen {
		return fmt.Errorf("%q is %d bytes: use %s", id, len(id), IDRule)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == ':':
		default:
			return fmt.Errorf("%q has %q: use %s", id, r, IDRule)
		}
	}
	return nil
}
