package backend

import "strings"

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
