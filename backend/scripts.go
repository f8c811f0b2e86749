package backend

import "github.com/redis/go-redis/v9"

// Terminal states are final: every script below leaves a record in
// SUCCESS, FAILURE or REVOKED untouched and returns it instead.

// ReasonCancelled is the value of a record's "reason" field (Record.Reason)
// when it was revoked by a cancel: the cancel is data, never inferred from
// an error's text.
const ReasonCancelled = "cancelled"

// pendingScript records a task as PENDING unless a record exists already.
//
// KEYS[1] task key
// ARGV[1] ttl (ms); ARGV[2..] field, value pairs
// Returns {1, ""} when created, {0, kind} when a record existed (kind is
// the existing record's, "" if it has none).
var pendingScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return {0, redis.call("HGET", KEYS[1], "kind") or ""} end
local args = {"state", "PENDING"}
for i = 2, #ARGV do args[#args+1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(args))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return {1, ""}
`)

// luaStartChecks begins startScript and durableStartScript: a delivery
// superseded by a recovery copy, a terminal task, a replaced one, or one of a
// cancelled workflow (recorded REVOKED here) is not started. It needs the
// KEYS and ARGV[1..6] of startScript and a local meta, the index of the
// first ARGV field/value pair for a missing record; it leaves cur (the
// record's state, result, error, next_try, replaced, retries, reason) and st.
const luaStartChecks = `
if ARGV[6] ~= "" and redis.call("HEXISTS", KEYS[1], "sup:" .. ARGV[6]) == 1 then
  return {"SUPERSEDED", "", ""}
end
local cur = redis.call("HMGET", KEYS[1], "state", "result", "error", "next_try", "replaced", "retries", "reason")
local st = cur[1]
if st == "SUCCESS" or st == "FAILURE" or st == "REVOKED" then
  return {st, cur[2] or "", cur[3] or "", "0", "", cur[7] or ""}
end
if cur[5] then return {"REPLACED", "", "", "0", "", "", cur[5]} end
if ARGV[4] == "1" and redis.call("HGET", KEYS[2], "cancelled") == "1" then
  local text = redis.call("HGET", KEYS[2], "cancel_reason") or "workflow cancelled"
  redis.call("HSET", KEYS[1], "state", "REVOKED", "error", text, "finished", ARGV[2], "reason", "` + ReasonCancelled + `")
  for i = meta, #ARGV, 2 do redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[i+1]) end
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
  redis.call("PUBLISH", ARGV[5], "REVOKED")
  return {"REVOKED", "", text, "0", "", "` + ReasonCancelled + `"}
end
`

// luaStartRecord records a start after luaStartChecks: the meta fields of
// a missing record, STARTED, the retry count (the larger of the record's and
// asynq's: a recovery copy or a resume starts asynq's afresh), one more
// execution. It leaves retries.
const luaStartRecord = `
if not st then
  for i = meta, #ARGV, 2 do redis.call("HSET", KEYS[1], ARGV[i], ARGV[i+1]) end
end
local retries = math.max(tonumber(cur[6]) or 0, tonumber(ARGV[3]))
redis.call("HSET", KEYS[1], "state", "STARTED", "started", ARGV[2], "retries", retries)
redis.call("HDEL", KEYS[1], "throttled", "throttled_until")
redis.call("HINCRBY", KEYS[1], "executions", 1)
`

// startScript moves a task to STARTED unless it is terminal or its workflow
// was cancelled, and clears the fields of a wait for a limit.
//
// KEYS[1] task key; KEYS[2] workflow key (may be an unused dummy)
// ARGV[1] ttl (ms); ARGV[2] now (unix ms); ARGV[3] retries so far;
// ARGV[4] "1" to check the workflow's cancel flag; ARGV[5] channel;
// ARGV[6] the delivering asynq task id ("" if unknown): a delivery that a
// recovery copy superseded returns SUPERSEDED and must not run;
// ARGV[7..] field, value pairs written only when the record is missing
// (kind, queue, enqueued, ...: a PENDING write may still be on its way).
// Returns {state, result, error[, next_try, "", reason, replaced, retries]}:
// state is STARTED when the caller should run the task (next_try is the
// recorded time of this retry, unix ms, "0" if none; retries the larger of
// the record's count and asynq's, which a recovery copy or a resume starts
// afresh), else the terminal state found with its reason field (or REVOKED,
// reason ReasonCancelled, for a cancelled workflow), or REPLACED with the
// replacement's id as seventh element for a task that replaced itself with a
// workflow (its handler must not run again).
var startScript = redis.NewScript(`local meta = 7` + luaStartChecks + `
` + luaStartRecord + `
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return {"STARTED", "", "", cur[4] or "0", "", "", "", retries}
`)

// finishScript records RETRY, SUCCESS, FAILURE or REVOKED and publishes the
// new state, unless the record is terminal already.
//
// KEYS[1] task key
// ARGV[1] ttl (ms); ARGV[2] new state; ARGV[3] channel; ARGV[4..] field, value pairs
// Returns {state, "", "", "", "w"} when written (the caller knows what it
// wrote), else {state, result, error, "0", "", reason} of the terminal
// record that was kept.
var finishScript = redis.NewScript(`
local cur = redis.call("HMGET", KEYS[1], "state", "result", "error", "reason")
local st = cur[1]
if st == "SUCCESS" or st == "FAILURE" or st == "REVOKED" then
  return {st, cur[2] or "", cur[3] or "", "0", "", cur[4] or ""}
end
local args = {"state", ARGV[2]}
for i = 4, #ARGV do args[#args+1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(args))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
redis.call("PUBLISH", ARGV[3], ARGV[2])
return {ARGV[2], "", "", "", "w"}
`)

// chordJoinScript stores one header result of a chord. Idempotent per
// index: a header task delivered twice joins once. When every header result
// is present it returns them in header order; the caller then dispatches the
// body under its deterministic id, so a repeated completion cannot run the
// body twice, and a crash after the join cannot lose it (the redelivered
// header joins again and sees the chord complete).
//
// KEYS[1] chord key
// ARGV[1] ttl (ms); ARGV[2] index; ARGV[3] result JSON; ARGV[4] header count
// Returns {} while results are missing, else the N results in order.
var chordJoinScript = redis.NewScript(`
if redis.call("HSETNX", KEYS[1], "r" .. ARGV[2], ARGV[3]) == 1 then
  redis.call("HINCRBY", KEYS[1], "joined", 1)
end
redis.call("PEXPIRE", KEYS[1], ARGV[1])
local n = tonumber(ARGV[4])
if tonumber(redis.call("HGET", KEYS[1], "joined")) < n then return {} end
local out = {}
for i = 0, n - 1, 500 do
  local fields = {}
  for j = i, math.min(i + 499, n - 1) do fields[#fields+1] = "r" .. j end
  local vals = redis.call("HMGET", KEYS[1], unpack(fields))
  for _, v in ipairs(vals) do out[#out+1] = v end
end
return out
`)

// supersedeScript marks an orphaned delivery (a dead worker's asynq task id)
// as replaced by a recovery copy, once.
//
// KEYS[1] task key
// ARGV[1] asynq task id of the orphan; ARGV[2] ttl (ms)
// Returns 1 when marked, 0 when it was marked before.
var supersedeScript = redis.NewScript(`
if redis.call("HEXISTS", KEYS[1], "sup:" .. ARGV[1]) == 1 then return 0 end
if redis.call("EXISTS", KEYS[1]) == 0 then redis.call("HSET", KEYS[1], "state", "PENDING") end
redis.call("HSET", KEYS[1], "sup:" .. ARGV[1], "1")
redis.call("HINCRBY", KEYS[1], "recovered", 1)
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1
`)

// finishSeqScript is finishScript over several records of one workflow (one
// hash slot), applied in order in one atomic call: later steps are revoked
// before their workflow fails, a last step succeeds before its workflow does.
//
// KEYS[1..n] task keys
// ARGV[1] "1" to stop at the first record found terminal (its followers are
// then left alone and not returned); then for each key a segment: ttl (ms),
// new state, channel, m, then m field/value arguments.
// Returns one status per key handled, as finishScript does.
var finishSeqScript = redis.NewScript(`
local out = {}
local a = 2
for k = 1, #KEYS do
  local ttl, state, channel, m = ARGV[a], ARGV[a+1], ARGV[a+2], tonumber(ARGV[a+3])
  local fields = {}
  for i = a + 4, a + 3 + m do fields[#fields+1] = ARGV[i] end
  a = a + 4 + m
  local cur = redis.call("HMGET", KEYS[k], "state", "result", "error", "reason")
  local st = cur[1]
  if st == "SUCCESS" or st == "FAILURE" or st == "REVOKED" then
    out[k] = {st, cur[2] or "", cur[3] or "", "0", "", cur[4] or ""}
    if ARGV[1] == "1" then return out end
  else
    redis.call("HSET", KEYS[k], "state", state, unpack(fields))
    redis.call("PEXPIRE", KEYS[k], ttl)
    redis.call("PUBLISH", channel, state)
    out[k] = {state, "", "", "", "w"}
  end
end
return out
`)

// replacedScript records on a running task the id of the workflow that
// replaces it, unless the task is terminal already (its replacement may have
// ended first).
//
// KEYS[1] task key
// ARGV[1] replacement workflow id; ARGV[2] ttl (ms)
// Returns 1 when recorded, 0 when the task was terminal.
var replacedScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if st == "SUCCESS" or st == "FAILURE" or st == "REVOKED" then return 0 end
redis.call("HSET", KEYS[1], "replaced", ARGV[1])
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1
`)
