package asynqx

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Scripts of this package. Each writes asynq's layout exactly as the asynq
// script it stands for would (named in its header); pin_test.go and the
// equivalence tests check that against asynq itself.

// batchDequeueScript is asynq's dequeue (dequeueCmd) for up to ARGV[3]
// tasks in one call: each task is moved from pending to active, its hash
// gets state "active" and loses pending_since, and it enters the lease set
// with the lease asynq chose. A paused queue gives nothing.
//
// KEYS[1] asynq:{q}:pending    ARGV[1] lease expiry, Unix seconds
// KEYS[2] asynq:{q}:paused     ARGV[2] task key prefix asynq:{q}:t:
// KEYS[3] asynq:{q}:active     ARGV[3] how many tasks at most
// KEYS[4] asynq:{q}:lease
//
// Returns id, msg, pending_since for each task moved, in dequeue order
// (msg false when the hash has none; pending_since "" when it had none), or
// nil when none was, as asynq's dequeue does (so that a hook around this one,
// like baton's long poll, sees the same empty reply either way).
var batchDequeueScript = newScript(`
if redis.call("EXISTS", KEYS[2]) == 1 then
	return nil
end
local out = {}
for i = 1, tonumber(ARGV[3]) do
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if not id then
		break
	end
	local key = ARGV[2] .. id
	local v = redis.call("HMGET", key, "msg", "pending_since")
	redis.call("HSET", key, "state", "active")
	redis.call("HDEL", key, "pending_since")
	redis.call("ZADD", KEYS[4], ARGV[1], id)
	out[#out + 1] = id
	out[#out + 1] = v[1]
	out[#out + 1] = v[2] or ""
end
if #out == 0 then
	return nil
end
return out`)

// giveBackScript returns dequeued tasks that never started to the head of
// pending: asynq's requeue (requeueCmd) for each, which also restores the
// pending_since the dequeue removed (asynq's requeue leaves it unset; the
// task never ran, so its wait goes on counting for asynqmon's latency). A
// task no longer active is skipped.
//
// KEYS[1] asynq:{q}:active    ARGV[1] task key prefix asynq:{q}:t:
// KEYS[2] asynq:{q}:lease     ARGV[2…] id, pending_since pairs, the task
// KEYS[3] asynq:{q}:pending            to run first last
//
// Returns how many tasks went back.
var giveBackScript = newScript(`
local n = 0
for i = 2, #ARGV, 2 do
	local id = ARGV[i]
	if redis.call("LREM", KEYS[1], 0, id) > 0 then
		redis.call("ZREM", KEYS[2], id)
		redis.call("RPUSH", KEYS[3], id)
		if ARGV[i + 1] ~= "" then
			redis.call("HSET", ARGV[1] .. id, "state", "pending", "pending_since", ARGV[i + 1])
		else
			redis.call("HSET", ARGV[1] .. id, "state", "pending")
		end
		n = n + 1
	end
end
return n`)

// script is a Lua script with its text at hand, for EVAL after a NOSCRIPT
// reply (go-redis keeps a Script's text unexported).
type script struct {
	src string
	rs  *redis.Script
}

func newScript(src string) *script { return &script{src: src, rs: redis.NewScript(src)} }

// run runs the script on c (EVALSHA, then EVAL after a NOSCRIPT).
func (s *script) run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	return s.rs.Run(ctx, c, keys, args...)
}

// runVia runs the script through next, the rest of a go-redis hook chain,
// so that hooks outside this one do not see it.
func (s *script) runVia(ctx context.Context, next redis.ProcessHook, keys []string, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, s.args("evalsha", keys, args)...)
	cmd.SetErr(next(ctx, cmd))
	if isNoScript(cmd.Err()) {
		cmd = redis.NewCmd(ctx, s.args("eval", keys, args)...)
		cmd.SetErr(next(ctx, cmd))
	}
	return cmd
}

// args is the command that runs the script: name "evalsha" or "eval".
func (s *script) args(name string, keys []string, args []any) []any {
	a := make([]any, 0, 3+len(keys)+len(args))
	body := s.rs.Hash()
	if name == "eval" {
		body = s.src
	}
	a = append(a, name, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return append(a, args...)
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
