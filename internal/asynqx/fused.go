package asynqx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fused step completion: one script call that runs the caller's own writes
// (a Lua prologue, e.g. baton's SUCCESS record and hand-off bookkeeping),
// then acknowledges the current asynq task as asynq's done script would,
// enqueues the next tasks as asynq.Client would, and publishes a wake-up for
// their queues. asynq's own acknowledgement of that task, when its handler
// returns, is then answered by the hook without reaching Redis.

var (
	// ErrFusedUnavailable: the client is not a single Redis node (or a
	// Sentinel-managed one). On Redis Cluster asynq's keys ({queue} slot)
	// and the caller's keys cannot be in one script: use the multi-trip
	// path (the caller's writes, asynq.Client's Enqueue, asynq's own ack).
	ErrFusedUnavailable = errors.New("asynqx: fused completion needs a single Redis node or a Sentinel-managed one, not a Cluster (asynq's {queue} keys and the caller's keys are in different slots): use the multi-trip path")
	// ErrUnknownTask: the task to acknowledge was not handed to asynq by
	// this hook, or asynq already acknowledged it. Use the multi-trip path.
	ErrUnknownTask = errors.New("asynqx: the task to acknowledge is not one this hook handed to asynq and asynq has not acknowledged: use the multi-trip path")
	// ErrNotFusable: the task keeps a result after completion (asynq's
	// Retention option), which asynq acknowledges with a different script.
	// Use the multi-trip path.
	ErrNotFusable = errors.New("asynqx: the task has a Retention (asynq marks it completed, not done), which fused completion does not do: use the multi-trip path")
)

// SupportsFused reports whether fused completion can run on rdb: on a
// single node or a Sentinel-managed one (*redis.Client) yes; on Redis
// Cluster (or a Ring) no.
func SupportsFused(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.Client)
	return ok
}

// Fused reports whether Complete can run on the hook's client.
func (h *Hook) Fused() bool { return SupportsFused(h.rdb) }

// fusedTemplate is the fused completion script around a caller's prologue
// (%s). Layout:
//
//	ARGV[1] #prologue KEYS (pk)     KEYS[1..pk]  the prologue's KEYS
//	ARGV[2] #prologue ARGV (pa)     ARGV[3..2+pa] the prologue's ARGV
//
// then, with a = pa+3 and k = pk+1:
//
//	ARGV[a]   id of the asynq task to acknowledge ("" for none)
//	ARGV[a+1] stats expiration, Unix seconds   KEYS[k..k+4] when acking:
//	ARGV[a+2] max int64                        active, lease, t:<id>,
//	ARGV[a+3] now, Unix ns (pending_since)     processed:<day>, processed
//	ARGV[a+4] wake-up channel ("" for none)    (+ its unique key when
//	ARGV[a+5] n, the tasks to enqueue           ARGV[a+6] is "1")
//	ARGV[a+6] "1" if the acked task holds a unique key
//	then per task: msg, id, process_at (Unix s, "0" for now), queue;
//	KEYS per task: t:<id>, pending (or scheduled); then asynq:queues.
//
// The prologue runs as function(KEYS, ARGV) with its own KEYS and ARGV; it
// returns reply[, proceed]. proceed == false stops there: nothing is
// acknowledged or enqueued. A redis.error_reply it returns aborts the
// script with that error (what it wrote stays written: validate first).
//
// The acknowledgement is asynq's doneCmd (doneUniqueCmd): LREM active, ZREM
// lease, DEL the task's hash, each failure meaning NOT FOUND and stopping
// the ack there; then the processed counters. NOT FOUND does not stop the
// enqueue: what the prologue recorded must be handed on.
//
// Each enqueue is asynq's enqueueCmd (scheduleCmd for a later time): an
// existing task hash means an id conflict and enqueues nothing.
//
// Returns {reply, 0} when stopped, else {reply, 1, acked, enqueued...}.
const fusedTemplate = `
local pk, pa = tonumber(ARGV[1]), tonumber(ARGV[2])
local function part(t, from, n)
	local r = {}
	for i = 1, n do
		r[i] = t[from + i - 1]
	end
	return r
end
local function prologue(KEYS, ARGV)
%s
end
local reply, proceed = prologue(part(KEYS, 1, pk), part(ARGV, 3, pa))
if type(reply) == "table" and reply.err then
	return reply
end
if reply == nil then
	reply = false
end
if proceed == false then
	return {reply, 0}
end
local k, a = pk + 1, pa + 3
local id, now, wake, n = ARGV[a], ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
local unique = ARGV[a + 6] == "1"
local acked = 0
if id ~= "" then
	if redis.call("LREM", KEYS[k], 0, id) ~= 0 and redis.call("ZREM", KEYS[k + 1], id) ~= 0 and redis.call("DEL", KEYS[k + 2]) ~= 0 then
		acked = 1
		local c = redis.call("INCR", KEYS[k + 3])
		if tonumber(c) == 1 then
			redis.call("EXPIREAT", KEYS[k + 3], ARGV[a + 1])
		end
		local total = redis.call("GET", KEYS[k + 4])
		if tonumber(total) == tonumber(ARGV[a + 2]) then
			redis.call("SET", KEYS[k + 4], 1)
		else
			redis.call("INCR", KEYS[k + 4])
		end
		if unique and redis.call("GET", KEYS[k + 5]) == id then
			redis.call("DEL", KEYS[k + 5])
		end
	end
	k = k + 5
	if unique then
		k = k + 1
	end
end
local out = {reply, 1, acked}
local queues, woken = KEYS[k + 2 * n], {}
local j = a + 7
for i = 1, n do
	local tkey, list = KEYS[k], KEYS[k + 1]
	local msg, tid, at, q = ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]
	if redis.call("EXISTS", tkey) == 1 then
		out[#out + 1] = 0
	else
		redis.call("SADD", queues, q)
		if at == "0" then
			redis.call("HSET", tkey, "msg", msg, "state", "pending", "pending_since", now)
			redis.call("LPUSH", list, tid)
			if wake ~= "" and not woken[q] then
				woken[q] = true
				redis.call("PUBLISH", wake, q)
			end
		else
			redis.call("HSET", tkey, "msg", msg, "state", "scheduled")
			redis.call("ZADD", list, at, tid)
		end
		out[#out + 1] = 1
	end
	k = k + 2
	j = j + 4
end
return out`

// Completer is one fused completion script: a caller's Lua prologue
// followed by asynq's acknowledgement, enqueues and a wake-up. Make one per
// prologue, once (the script is loaded into Redis by its SHA1).
type Completer struct{ s *script }

// NewCompleter returns the fused completion script around prologue: the
// body of a Lua function(KEYS, ARGV) that sees only the KEYS and ARGV given
// in Completion.Keys and Completion.Args, and returns reply[, proceed].
// reply comes back in Completed.Reply; a proceed of false stops the script
// before it acknowledges or enqueues anything (the caller then takes the
// multi-trip path); returning redis.error_reply(…) fails Complete with that
// error. An empty prologue is "return nil".
func NewCompleter(prologue string) *Completer {
	if strings.TrimSpace(prologue) == "" {
		prologue = "return nil"
	}
	return &Completer{s: newScript(fmt.Sprintf(fusedTemplate, prologue))}
}

// Completion is one fused call.
type Completion struct {
	// TaskID is the asynq task to acknowledge (asynq.GetTaskID of the
	// handler's context); "" acknowledges none.
	TaskID string
	// Keys and Args are the prologue's KEYS and ARGV.
	Keys []string
	Args []any
	// Next are the tasks to enqueue.
	Next []Next
	// Wake, when set, is the channel on which each queue that got a
	// pending task is published (its name is the message), once per call.
	Wake string
}

// Next is a task to enqueue.
type Next struct {
	Msg *TaskMessage
	// ProcessAt, when after now, schedules the task (asynq's scheduled
	// set, forwarded by the servers); else it is pending at once.
	ProcessAt time.Time
}

// Completed is what a fused call did.
type Completed struct {
	// Reply is what the prologue returned (Lua false and nil are nil).
	Reply any
	// Proceeded is false when the prologue stopped the call: nothing was
	// acknowledged or enqueued.
	Proceeded bool
	// Acked: the task was active and now is done. False with Proceeded
	// when asynq no longer held it as active (its lease was lost and it
	// was recovered): it will be delivered again, and the caller's record
	// decides what that delivery does.
	Acked bool
	// Enqueued says, per Next, whether the task was enqueued (false: a
	// task with its id exists already).
	Enqueued []bool
}

// Complete runs a fused completion. With a TaskID, the task must be one
// this hook handed to asynq and asynq has not acknowledged yet, and
// asynq's own acknowledgement of it (when the handler returns, whatever it
// returns) is answered by the hook without reaching Redis; if Complete
// fails, nothing is known of what ran and asynq's acknowledgement goes to
// Redis as usual. Concurrent calls share round trips in the group commit.
func (h *Hook) Complete(ctx context.Context, c *Completer, req Completion) (Completed, error) {
	if !h.Fused() {
		return Completed{}, ErrFusedUnavailable
	}
	now := time.Now()
	ackKeys, unique, err := h.ackKeys(req.TaskID, now)
	if err != nil {
		return Completed{}, err
	}
	nextKeys, nextArgs, err := nextTasks(req.Next, now)
	if err != nil {
		return Completed{}, err
	}
	keys := slices.Concat(req.Keys, ackKeys, nextKeys)
	args := make([]any, 0, 9+len(req.Args)+len(nextArgs))
	args = append(args, len(req.Keys), len(req.Args))
	args = append(args, req.Args...)
	args = append(args, req.TaskID, now.Add(statsTTL).Unix(), int64(math.MaxInt64), now.UnixNano(), req.Wake, len(req.Next), unique)
	args = append(args, nextArgs...)
	h.stats.completes.Add(1)
	res, err := h.runScript(ctx, c.s, keys, args)
	if err != nil {
		return Completed{}, fmt.Errorf("asynqx: complete: %w", err)
	}
	out, err := parseCompleted(res, len(req.Next))
	if err != nil {
		return Completed{}, err
	}
	if out.Proceeded && req.TaskID != "" {
		h.mu.Lock()
		if _, ok := h.running[req.TaskID]; ok {
			h.fused[req.TaskID] = true // answer asynq's own ack locally
		}
		h.mu.Unlock()
	}
	return out, nil
}

// ackKeys are the KEYS of the acknowledgement of task id (none for ""),
// and "1" when it holds a unique lock (its key is the last), else "0".
func (h *Hook) ackKeys(id string, now time.Time) ([]string, string, error) {
	if id == "" {
		return nil, "0", nil
	}
	h.mu.Lock()
	t, ok := h.running[id]
	h.mu.Unlock()
	if !ok {
		return nil, "", fmt.Errorf("task %s: %w", id, ErrUnknownTask)
	}
	m, err := Decode([]byte(t.msg))
	if err != nil {
		return nil, "", fmt.Errorf("asynqx: complete task %s: %w", id, err)
	}
	if m.Retention > 0 {
		return nil, "", fmt.Errorf("task %s: %w", id, ErrNotFusable)
	}
	q := t.queue
	keys := []string{activeKey(q), leaseKey(q), taskKey(q, id), processedKey(q, now), processedTotalKey(q)}
	if m.UniqueKey == "" {
		return keys, "0", nil
	}
	return append(keys, m.UniqueKey), "1", nil
}

// nextTasks are the KEYS and ARGV of the enqueue of next: per task its
// hash and its list (pending, or scheduled for a later ProcessAt), then
// asynq:queues; per task its message, id, process_at ("0" for now) and
// queue.
func nextTasks(next []Next, now time.Time) ([]string, []any, error) {
	if len(next) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, 0, 2*len(next)+1)
	args := make([]any, 0, 4*len(next))
	for i, n := range next {
		if err := checkNext(n.Msg); err != nil {
			return nil, nil, fmt.Errorf("asynqx: complete: next task %d: %w", i, err)
		}
		enc, err := Encode(n.Msg)
		if err != nil {
			return nil, nil, fmt.Errorf("asynqx: complete: next task %d: %w", i, err)
		}
		q, at, list := n.Msg.Queue, int64(0), pendingKey(n.Msg.Queue)
		if n.ProcessAt.After(now) {
			at, list = n.ProcessAt.Unix(), scheduledKey(q)
		}
		keys = append(keys, taskKey(q, n.Msg.ID), list)
		args = append(args, enc, n.Msg.ID, at, q)
	}
	return append(keys, allQueues), args, nil
}

// runScript runs one of this package's scripts in the group commit, or
// directly when group commit is off or closed.
func (h *Hook) runScript(ctx context.Context, s *script, keys []string, args []any) (any, error) {
	if h.commit != nil {
		if val, ok, err := h.commit.do(ctx, s.args("evalsha", keys, args), s); ok {
			return val, err
		}
	}
	return s.run(ctx, h.rdb, keys, args...).Result()
}

// checkNext rejects a message asynq could not run as given.
func checkNext(m *TaskMessage) error {
	switch {
	case m == nil:
		return errors.New("nil message")
	case strings.TrimSpace(m.Type) == "":
		return errors.New("empty Type: asynq refuses a task without a type name")
	case m.ID == "":
		return errors.New("empty ID: give it a unique id (baton's are deterministic)")
	case m.Queue == "":
		return errors.New("empty Queue: name the queue (asynq's default is \"default\")")
	case m.Timeout <= 0 && m.Deadline <= 0:
		return errors.New("neither Timeout nor Deadline is set: asynq.Client sets Timeout 1800 (s) when neither is chosen")
	case m.UniqueKey != "":
		return errors.New("UniqueKey is set: the fused enqueue takes no uniqueness lock; enqueue it with asynq.Client's Unique option")
	case m.GroupKey != "":
		return errors.New("GroupKey is set: the fused enqueue does not aggregate; enqueue it with asynq.Client's Group option")
	}
	return nil
}

func parseCompleted(res any, n int) (Completed, error) {
	a, ok := res.([]any)
	if !ok || len(a) < 2 {
		return Completed{}, fmt.Errorf("asynqx: complete: unexpected reply %v", res)
	}
	out := Completed{Reply: a[0], Proceeded: a[1] == int64(1)}
	if !out.Proceeded {
		return out, nil
	}
	if len(a) != 3+n {
		return Completed{}, fmt.Errorf("asynqx: complete: reply of %d items for %d tasks", len(a), n)
	}
	out.Acked = a[2] == int64(1)
	out.Enqueued = make([]bool, n)
	for i := range n {
		out.Enqueued[i] = a[3+i] == int64(1)
	}
	return out, nil
}
