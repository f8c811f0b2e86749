package backend

import "github.com/redis/go-redis/v9"

// Scripts of durable runs (see the protocol in the root package's
// durable.go). Every key a script touches is in the run's hash slot: the run
// hash, its pending-children set, the run's task record and its children's
// records all share the tag of the run id.
//
// Conventions: "now" is unix ms from the caller; a "ttl" is ms; a run's
// keys get at least the TTL on every write (keepTTL never shortens a longer
// TTL set for a long wait).

// luaCommon is prepended to the scripts that need it.
//
// keepTTL(key, ms) gives key at least ms to live.
// fence(task, run, fence) returns nil when the delivery described by fence
// ("rg|root|delivery id") still owns the run: the task is STARTED, the
// run's generation is rg, its claim is root and its last claiming delivery
// is this one (a recovery copy that started since fences out the delivery
// it copied, should that one still be alive). Otherwise it
// returns {"GONE", state} for a terminal run or {"LOST", state} when another
// delivery owns it (a resume took over, or the run parked): the caller's
// handler must stop without writing anything more.
const luaCommon = `
local function keepTTL(key, ms)
  local cur = redis.call("PTTL", key)
  if cur >= 0 and cur >= tonumber(ms) then return end
  redis.call("PEXPIRE", key, ms)
end
local function terminal(st)
  return st == "SUCCESS" or st == "FAILURE" or st == "REVOKED"
end
local function fence(task, run, f)
  local st = redis.call("HGET", task, "state")
  if terminal(st) then return {"GONE", st} end
  local r = redis.call("HMGET", run, "gen", "claim", "dlv")
  if st ~= "STARTED" or (r[1] or "0") .. "|" .. (r[2] or "") .. "|" .. (r[3] or "") ~= f then
    return {"LOST", st or ""}
  end
  return nil
end
`

// durableStartScript claims a delivery of a durable run: the start rules of
// the protocol. It is startScript's checks (superseded, terminal, replaced,
// cancelled workflow) followed by the claim.
//
// KEYS[1] task key; KEYS[2] workflow key (or the task key when unused);
// KEYS[3] run hash
// ARGV[1] ttl; ARGV[2] now; ARGV[3] asynq's retry count; ARGV[4] "1" to check
// the workflow's cancel flag; ARGV[5] channel; ARGV[6] asynq delivery id;
// ARGV[7] root delivery id; ARGV[8] resume generation of the delivery (rg);
// ARGV[9] the run's message (stored once); ARGV[10] declared event names,
// newline-separated; ARGV[11..] field, value pairs for a missing record.
// Returns:
//
//	{"SUPERSEDED", "", ""}, {terminal state, result, error},
//	{"REPLACED", "", "", "0", "", id}, {"REVOKED", "", reason}: as startScript;
//	{"STALE", "", "", state, gen}: drop the delivery;
//	{"PARKED", "", "", gen, ready, until}: the run waits at a later generation
//	  than the delivery's; ready is 1 when what it waits for is there;
//	{"STARTED", "", "", next_try, retries, gen, {run hash field, value...}}:
//	  run the handler (retries is the larger of the record's and asynq's).
var durableStartScript = redis.NewScript(luaCommon + `local meta = 11` + luaStartChecks + `
local run = redis.call("HMGET", KEYS[3], "gen", "claim", "wait_op", "wait_kind", "wait_until")
local gen = tonumber(run[1]) or 0
local rg = tonumber(ARGV[8])
local now = tonumber(ARGV[2])
if st == "WAITING" then
  local seq = run[3] or ""
  local untl = tonumber(run[5]) or 0
  if gen > rg then
    local ready = 0
    if redis.call("HEXISTS", KEYS[3], "s:" .. seq) == 1 or (untl > 0 and untl <= now) then ready = 1 end
    return {"PARKED", "", "", gen, ready, untl}
  end
  if gen < rg then return {"STALE", "", "", st, gen} end
  if redis.call("HEXISTS", KEYS[3], "s:" .. seq) == 0 and untl > 0 and untl <= now then
    if run[4] == "sleep" then
      redis.call("HSET", KEYS[3], "s:" .. seq, "ok", "tf:" .. seq, ARGV[2])
    elseif run[4] == "event" then
      redis.call("HSET", KEYS[3], "s:" .. seq, "err", "e:" .. seq, "timeout", "tf:" .. seq, ARGV[2])
    end
  end
  redis.call("HDEL", KEYS[3], "wait_op", "wait_kind", "wait_until", "wait_ev")
  redis.call("HDEL", KEYS[1], "waiting")
elseif st == "STARTED" or st == "RETRY" then
  if gen ~= rg or (run[2] and run[2] ~= ARGV[7]) then return {"STALE", "", "", st, gen} end
elseif rg ~= 0 then
  return {"STALE", "", "", st or "", gen}
end
` + luaStartRecord + `
keepTTL(KEYS[1], ARGV[1])
redis.call("HSET", KEYS[3], "claim", ARGV[7], "dlv", ARGV[6], "events", ARGV[10])
redis.call("HSETNX", KEYS[3], "msg", ARGV[9])
keepTTL(KEYS[3], ARGV[1])
return {"STARTED", "", "", cur[4] or "0", retries, gen, redis.call("HGETALL", KEYS[3])}
`)

// opRecordScript records the outcome of an operation that completes in the
// handler (a Step): its header unless present, its status and its result or
// error, and drops the step's checkpoint. Fenced.
//
// KEYS[1] run hash; KEYS[2] task key
// ARGV[1] seq; ARGV[2] fence; ARGV[3] unused; ARGV[4] now; ARGV[5] ttl;
// ARGV[6] op header; ARGV[7] "ok" or "err"; ARGV[8] result JSON or error
// text; ARGV[9] when the operation started (unix ms)
// Returns {"OK"}; {"EXISTS", header, status, result, error} when the
// operation was complete already (that outcome stands); or the fence's
// {"GONE"|"LOST", state}.
var opRecordScript = redis.NewScript(luaCommon + `
local f = fence(KEYS[2], KEYS[1], ARGV[2])
if f then return f end
local s = ARGV[1]
local done = redis.call("HMGET", KEYS[1], "o:" .. s, "s:" .. s, "r:" .. s, "e:" .. s)
if done[2] then return {"EXISTS", done[1] or "", done[2], done[3] or "", done[4] or ""} end
redis.call("HSETNX", KEYS[1], "o:" .. s, ARGV[6])
redis.call("HSETNX", KEYS[1], "ts:" .. s, ARGV[9])
local vf = "r:"
if ARGV[7] ~= "ok" then vf = "e:" end
redis.call("HSET", KEYS[1], "s:" .. s, ARGV[7], vf .. s, ARGV[8], "tf:" .. s, ARGV[4])
redis.call("HDEL", KEYS[1], "k:s" .. s)
keepTTL(KEYS[1], ARGV[5])
return {"OK"}
`)

// callStartScript records an operation that starts children (Call, Map,
// CallCanvas) before they are enqueued: its header, the count of children
// still to finish, each child in the run's pending set, and a PENDING record
// for each child task naming its waiter. An operation with no children is
// complete at once. Fenced.
//
// KEYS[1] run hash; KEYS[2] task key; KEYS[3] pending set; KEYS[4..] the
// children's task keys (none for a workflow child)
// ARGV[1] seq; ARGV[2] fence; ARGV[3] unused; ARGV[4] now; ARGV[5] ttl;
// ARGV[6] op header; ARGV[7] child kind; ARGV[8] child queue; ARGV[9]
// waiter ("<run>:<seq>"); ARGV[10] ttl of the children's records;
// ARGV[11..] child ids
// Returns {"OK"}; {"EXISTS", header} when the operation was recorded before;
// or the fence's answer.
var callStartScript = redis.NewScript(luaCommon + `
local f = fence(KEYS[2], KEYS[1], ARGV[2])
if f then return f end
local s = ARGV[1]
local h = redis.call("HGET", KEYS[1], "o:" .. s)
if h then return {"EXISTS", h} end
local n = #ARGV - 10
redis.call("HSET", KEYS[1], "o:" .. s, ARGV[6], "ts:" .. s, ARGV[4], "p:" .. s, n)
for i = 11, #ARGV do redis.call("SADD", KEYS[3], ARGV[i]) end
for k = 4, #KEYS do
  if redis.call("EXISTS", KEYS[k]) == 0 then
    redis.call("HSET", KEYS[k], "state", "PENDING", "kind", ARGV[7], "queue", ARGV[8], "enqueued", ARGV[4], "waiter", ARGV[9])
    redis.call("PEXPIRE", KEYS[k], ARGV[10])
  end
end
if n == 0 then redis.call("HSET", KEYS[1], "s:" .. s, "ok", "tf:" .. s, ARGV[4]) end
keepTTL(KEYS[1], ARGV[5])
if n > 0 then keepTTL(KEYS[3], ARGV[10]) end
return {"OK"}
`)

// parkScript is the one place a run starts to wait. It first writes what the
// operation needs recorded (its header unless present, then field/value
// pairs such as a step's attempt count), then checks whether what the
// operation waits for is there: its status is set (children all finished, an
// event delivered), a buffered event of its name (consumed into the
// operation), or a deadline passed (a sleep completes, an event wait times
// out, a step retry is due). If so it returns READY and the handler goes on
// inline. Otherwise the task becomes WAITING with what it waits for, and the
// run's generation goes up by one: from here only a delivery of the new
// generation can claim the run. Fenced.
//
// KEYS[1] run hash; KEYS[2] task key; KEYS[3] pending set
// ARGV[1] seq; ARGV[2] fence; ARGV[3] unused; ARGV[4] now; ARGV[5] ttl;
// ARGV[6] wait kind (children, sleep, event, retry); ARGV[7] deadline (unix
// ms, 0 for none); ARGV[8] event name; ARGV[9] the task's "waiting" text;
// ARGV[10] channel; ARGV[11] latest time anything awaited can happen (unix
// ms; the keys live at least until then plus the ttl); ARGV[12] number of
// children; ARGV[13] op header ("" when recorded); ARGV[14..] field, value
// pairs
// Returns {"READY", status, result, error, {child outcomes}}, {"PARKED",
// gen}, or the fence's answer.
var parkScript = redis.NewScript(luaCommon + `
local f = fence(KEYS[2], KEYS[1], ARGV[2])
if f then return f end
local s, now, kind = ARGV[1], tonumber(ARGV[4]), ARGV[6]
local untl = tonumber(ARGV[7])
if ARGV[13] ~= "" then
  redis.call("HSETNX", KEYS[1], "o:" .. s, ARGV[13])
  redis.call("HSETNX", KEYS[1], "ts:" .. s, ARGV[4])
end
for i = 14, #ARGV, 2 do redis.call("HSET", KEYS[1], ARGV[i], ARGV[i+1]) end
local st = redis.call("HGET", KEYS[1], "s:" .. s)
if not st then
  if kind == "event" then
    local p = redis.call("HGET", KEYS[1], "ev:" .. ARGV[8])
    if p then
      redis.call("HSET", KEYS[1], "s:" .. s, "ok", "r:" .. s, p, "tf:" .. s, ARGV[4])
      redis.call("HDEL", KEYS[1], "ev:" .. ARGV[8])
      st = "ok"
    elseif untl > 0 and untl <= now then
      redis.call("HSET", KEYS[1], "s:" .. s, "err", "e:" .. s, "timeout", "tf:" .. s, ARGV[4])
      st = "err"
    end
  elseif kind == "sleep" and untl <= now then
    redis.call("HSET", KEYS[1], "s:" .. s, "ok", "tf:" .. s, ARGV[4])
    st = "ok"
  elseif kind == "retry" and untl <= now then
    st = ""
  end
end
if st then
  local out = {}
  local n = tonumber(ARGV[12])
  for i = 0, n - 1, 500 do
    local fields = {}
    for j = i, math.min(i + 499, n - 1) do fields[#fields+1] = "c:" .. s .. ":" .. j end
    local vals = redis.call("HMGET", KEYS[1], unpack(fields))
    for _, v in ipairs(vals) do out[#out+1] = v or "" end
  end
  local v = redis.call("HMGET", KEYS[1], "r:" .. s, "e:" .. s)
  keepTTL(KEYS[1], ARGV[5])
  return {"READY", st, v[1] or "", v[2] or "", out}
end
local gen = (tonumber(redis.call("HGET", KEYS[1], "gen")) or 0) + 1
redis.call("HSET", KEYS[1], "gen", gen, "wait_op", s, "wait_kind", kind, "wait_until", ARGV[7], "wait_ev", ARGV[8])
redis.call("HSET", KEYS[2], "state", "WAITING", "waiting", ARGV[9])
local ttl = tonumber(ARGV[5])
local last = tonumber(ARGV[11])
if last > now then ttl = ttl + (last - now) end
keepTTL(KEYS[1], ttl)
keepTTL(KEYS[2], ttl)
if redis.call("EXISTS", KEYS[3]) == 1 then keepTTL(KEYS[3], ttl) end
redis.call("PUBLISH", ARGV[10], "WAITING")
return {"PARKED", gen}
`)

// notifyScript tells a run that one of its children ended: the child leaves
// the pending set, its outcome is stored in the run, and when it was the
// operation's last the operation completes. When the run is parked on that
// operation it returns the generation to resume and the run's message (the
// caller enqueues the resume). Not fenced: any delivery of the child may
// call it, any number of times (a second call changes nothing and answers
// the same).
//
// KEYS[1] run hash; KEYS[2] the run's task key; KEYS[3] pending set
// ARGV[1] seq; ARGV[2] child id; ARGV[3] child index; ARGV[4] outcome
// ("STATE:result or error"); ARGV[5] now; ARGV[6] ttl
// Returns {"RESUME", gen, message} or {"OK"}.
var notifyScript = redis.NewScript(luaCommon + `
local s = ARGV[1]
if redis.call("SREM", KEYS[3], ARGV[2]) == 1 then
  redis.call("HSET", KEYS[1], "c:" .. s .. ":" .. ARGV[3], ARGV[4])
  if redis.call("HINCRBY", KEYS[1], "p:" .. s, -1) <= 0 then
    redis.call("HSET", KEYS[1], "s:" .. s, "ok", "tf:" .. s, ARGV[5])
  end
  keepTTL(KEYS[1], ARGV[6])
  if redis.call("EXISTS", KEYS[3]) == 1 then keepTTL(KEYS[3], ARGV[6]) end
end
if redis.call("HGET", KEYS[2], "state") == "WAITING" then
  local r = redis.call("HMGET", KEYS[1], "wait_op", "gen", "msg")
  if r[1] == s and redis.call("HEXISTS", KEYS[1], "s:" .. s) == 1 then
    return {"RESUME", r[2], r[3] or ""}
  end
end
return {"OK"}
`)

// signalScript delivers an event to a run. A run parked on this event gets
// the payload in the waiting operation, which completes (RESUME: the caller
// enqueues the resume). Otherwise the event is buffered for a later
// WaitEvent, if the run declares the name (or the caller vouches for it), and
// only one undelivered event per name is kept.
//
// KEYS[1] run hash; KEYS[2] task key
// ARGV[1] name; ARGV[2] payload; ARGV[3] now; ARGV[4] ttl; ARGV[5] the
// event names the caller knows for the run's kind (newline-separated; used
// when the run has not started); ARGV[6] "1" to accept any name for a run
// that has not started
// Returns {code, gen, message}: code is NOTSTARTED (no run hash and no
// started record: the caller looks the id up and calls again with ARGV[5]
// or ARGV[6]), NOTDURABLE, FINISHED (gen holds the state), UNKNOWN, PENDING,
// BUFFERED or DELIVERED. gen and message are set when a resume must be
// enqueued (DELIVERED, or a run whose delivered event was not yet resumed).
var signalScript = redis.NewScript(luaCommon + `
local st = redis.call("HGET", KEYS[2], "state")
if terminal(st) then return {"FINISHED", st, ""} end
local run = redis.call("HMGET", KEYS[1], "msg", "events", "wait_kind", "wait_op", "wait_ev", "gen")
local started = run[1] ~= false
if not started then
  if st and st ~= "PENDING" then return {"NOTDURABLE", st, ""} end
  if ARGV[5] == "" and ARGV[6] ~= "1" then return {"NOTSTARTED", "", ""} end
end
local name = ARGV[1]
local gen, msg = "", ""
if st == "WAITING" and run[3] == "event" then
  local s = run[4]
  if redis.call("HEXISTS", KEYS[1], "s:" .. s) == 0 then
    if run[5] == name then
      redis.call("HSET", KEYS[1], "s:" .. s, "ok", "r:" .. s, ARGV[2], "tf:" .. s, ARGV[3])
      keepTTL(KEYS[1], ARGV[4])
      return {"DELIVERED", run[6], run[1]}
    end
  else
    gen, msg = run[6], run[1]
    if run[5] == name and redis.call("HGET", KEYS[1], "r:" .. s) == ARGV[2] then
      return {"DELIVERED", gen, msg}
    end
  end
end
local declared = run[2]
if not started then declared = ARGV[5] end
if ARGV[6] ~= "1" or started then
  if not declared or not string.find("\n" .. declared .. "\n", "\n" .. name .. "\n", 1, true) then
    return {"UNKNOWN", gen, msg}
  end
end
if redis.call("HSETNX", KEYS[1], "ev:" .. name, ARGV[2]) == 0 then return {"PENDING", gen, msg} end
keepTTL(KEYS[1], ARGV[4])
return {"BUFFERED", gen, msg}
`)

// checkpointScript stores a checkpoint of a run at a position. Fenced.
//
// KEYS[1] run hash; KEYS[2] task key
// ARGV[1] checkpoint field; ARGV[2] fence; ARGV[3] unused; ARGV[4] ttl;
// ARGV[5] value
// Returns {"OK"} or the fence's answer.
var checkpointScript = redis.NewScript(luaCommon + `
local f = fence(KEYS[2], KEYS[1], ARGV[2])
if f then return f end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[5])
keepTTL(KEYS[1], ARGV[4])
return {"OK"}
`)

// cancelRunScript revokes a durable run (unless it is terminal; a run not
// started yet may have no record, which it then creates), recording the
// cancel as data (reason ReasonCancelled), and returns what a
// cancel must stop: its unfinished children and its current wait. Called
// again on a revoked run it answers the same, so a cancel cut short can be
// repeated.
//
// KEYS[1] task key; KEYS[2] run hash; KEYS[3] pending set
// ARGV[1] reason; ARGV[2] now; ARGV[3] ttl; ARGV[4] channel; ARGV[5..]
// field, value pairs for a missing record (kind, queue)
// Returns {state before, gen, message, delivery id, {child ids}}; state
// before is "" when the run had no record.
var cancelRunScript = redis.NewScript(luaCommon + `
local st = redis.call("HGET", KEYS[1], "state")
if not terminal(st) then
  for i = 5, #ARGV, 2 do redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[i+1]) end
  redis.call("HSET", KEYS[1], "state", "REVOKED", "error", ARGV[1], "finished", ARGV[2], "reason", "` + ReasonCancelled + `")
  redis.call("HDEL", KEYS[1], "waiting")
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
  redis.call("PUBLISH", ARGV[4], "REVOKED")
end
local r = redis.call("HMGET", KEYS[2], "gen", "msg", "dlv")
return {st or "", r[1] or "0", r[2] or "", r[3] or "", redis.call("SMEMBERS", KEYS[3])}
`)
