package backend

import "github.com/redis/go-redis/v9"

// Flow-control scripts. Every one reads the clock of the Redis server
// (TIME), so workers whose clocks disagree still share one schedule, and
// touches the keys of a single limit (one hash slot). Times are unix
// milliseconds with a fractional part; waits are returned in microseconds.

// rateScript is one GCRA check of a rate limit for one task attempt.
//
// The state is the theoretical arrival time (TAT): the time at which the
// allowance would be back to full if nothing else arrived. An attempt of
// cost c advances it by c×T (T the emission interval); it may start at
// TAT - τ (τ = burst×T, the tolerance). An attempt that may not start now
// RESERVES its slot anyway: the TAT is advanced and the attempt is told
// when to come back, so waiting attempts are spread one interval apart. The
// reservation is kept (member "<task id>/<attempt>"): the attempt that comes
// back, or a redelivery of it, is admitted at its time without a second
// charge.
//
// KEYS[1] TAT; KEYS[2] reservations; KEYS[3] the limit's key index
// ARGV[1] T (ms per unit of cost); ARGV[2] τ (ms); ARGV[3] cost;
// ARGV[4] member; ARGV[5] "1" to keep a reservation for an attempt admitted
// at once too; ARGV[6] key value; ARGV[7] how long a reservation is kept
// after its time (ms); ARGV[8] "1" to note the key value in the index (a
// limit with a Key; a limit without one has the single key "")
// Returns {wait µs, found}: wait 0 admits now, otherwise the attempt's
// reserved time is now+wait; found is 1 when an earlier reservation of this
// member answered (nothing was charged).
var rateScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local T, tau, cost, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[7])
if ARGV[8] == "1" and redis.call("ZADD", KEYS[3], now, ARGV[6]) == 1 then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now - 86400000)
  redis.call("PEXPIRE", KEYS[3], 86400000)
end
local r = redis.call("ZSCORE", KEYS[2], ARGV[4])
if r and tonumber(r) >= now - keep then
  local wait = tonumber(r) - now
  if wait < 0 then wait = 0 end
  return {math.ceil(wait * 1000), 1}
end
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if tat < now then tat = now end
local new = tat + T * cost
local at = new - tau
if at < now then at = now end
local ttl = math.ceil(new - now + keep)
redis.call("SET", KEYS[1], string.format("%.3f", new), "PX", ttl)
if at > now or ARGV[5] == "1" then
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - keep)
  redis.call("ZADD", KEYS[2], at, ARGV[4])
  if redis.call("PTTL", KEYS[2]) < ttl then redis.call("PEXPIRE", KEYS[2], ttl) end
end
return {math.ceil((at - now) * 1000), 0}
`)

// rateAdjustScript corrects a charge after the fact: a positive delta
// charges more (the TAT moves on from now at the latest), a negative one
// refunds (the TAT moves back; a refund older than the allowance's refill
// has no effect).
//
// KEYS[1] TAT
// ARGV[1] T (ms per unit); ARGV[2] delta (units, may be negative);
// ARGV[3] keep (ms)
// Returns the new TAT minus now, in µs (0 when the allowance is full).
var rateAdjustScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local d = tonumber(ARGV[1]) * tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if d > 0 and tat < now then tat = now end
tat = tat + d
if tat <= now then
  redis.call("DEL", KEYS[1])
  return 0
end
redis.call("SET", KEYS[1], string.format("%.3f", tat), "PX", math.ceil(tat - now + tonumber(ARGV[3])))
return math.ceil((tat - now) * 1000)
`)

// ratePauseScript lowers the allowance for everyone after an upstream said
// "too many requests, come back in P": nothing under the limit is admitted
// before now+P. Reservations from a second ago on move later (keeping their
// order and spacing), the TAT too, by as much as this pause reaches past
// any pause already in force (so several refusals seen at once do not add
// up); then the attempt that saw the refusal gets a new reservation after
// them. Its first charge stands: the attempt did reach the upstream.
//
// KEYS[1] TAT; KEYS[2] reservations; KEYS[3] key index; KEYS[4] pause end
// ARGV[1] T (ms per unit); ARGV[2] τ (ms); ARGV[3] P (ms); ARGV[4] cost of
// the new reservation; ARGV[5] member; ARGV[6] keep (ms); ARGV[7] key value;
// ARGV[8] "1" to note the key value in the index
// Returns the wait of the new reservation, in µs.
var ratePauseScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local T, tau, pause, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local till = now + pause
local prev = tonumber(redis.call("GET", KEYS[4]) or "0")
if prev < now then prev = now end
local shift = till - prev
if shift < 0 then shift = 0 end
if till > prev then
  redis.call("SET", KEYS[4], string.format("%.3f", till), "PX", math.ceil(pause) + 1000)
end
if ARGV[8] == "1" and redis.call("ZADD", KEYS[3], now, ARGV[7]) == 1 then redis.call("PEXPIRE", KEYS[3], 86400000) end
if shift > 0 then
  local rs = redis.call("ZRANGEBYSCORE", KEYS[2], now - 1000, "+inf", "WITHSCORES")
  for i = 1, #rs, 2 do redis.call("ZADD", KEYS[2], tonumber(rs[i + 1]) + shift, rs[i]) end
end
redis.call("ZREM", KEYS[2], ARGV[5])
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if tat < now then tat = now end
tat = tat + shift
if tat < till + tau - T then tat = till + tau - T end
local new = tat + T * tonumber(ARGV[4])
local at = new - tau
if at < till then at = till end
local ttl = math.ceil(new - now + keep)
redis.call("SET", KEYS[1], string.format("%.3f", new), "PX", ttl)
redis.call("ZADD", KEYS[2], at, ARGV[5])
if redis.call("PTTL", KEYS[2]) < ttl then redis.call("PEXPIRE", KEYS[2], ttl) end
return math.ceil((at - now) * 1000)
`)

// concAcquireScript takes (or renews) a slot of a concurrency limit. A slot
// is a lease: holders whose lease ended are dropped first, so a killed
// worker's slot comes back when its lease runs out. Re-entrant: a task that
// holds a slot (a redelivery of it) keeps it.
//
// KEYS[1] holders; KEYS[2] waiters; KEYS[3] key index
// ARGV[1] member (task id); ARGV[2] lease (ms); ARGV[3] max holders;
// ARGV[4] waiter entry "<queue> <asynq task id>" to remember when full ("":
// do not wait, a renewal); ARGV[5] key value; ARGV[6] "1" to note the key
// value in the index
// Returns {1, 0} when the slot is held, else {0, ms until the earliest
// lease ends}.
var concAcquireScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
if ARGV[6] == "1" and redis.call("ZADD", KEYS[3], now, ARGV[5]) == 1 then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now - 86400000)
  redis.call("PEXPIRE", KEYS[3], 86400000)
end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZSCORE", KEYS[1], ARGV[1]) or redis.call("ZCARD", KEYS[1]) < tonumber(ARGV[3]) then
  redis.call("ZADD", KEYS[1], now + lease, ARGV[1])
  redis.call("PEXPIRE", KEYS[1], lease + 1000)
  if ARGV[4] ~= "" then redis.call("ZREM", KEYS[2], ARGV[4]) end
  return {1, 0}
end
if ARGV[4] ~= "" then
  redis.call("ZADD", KEYS[2], now, ARGV[4])
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - 3 * lease)
  redis.call("PEXPIRE", KEYS[2], 3 * lease)
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
return {0, tonumber(first[2]) - now}
`)

// concReleaseScript gives a slot back and, when a slot is free, hands it to
// the longest-waiting task: its entry is removed and returned for the
// caller to wake.
//
// KEYS[1] holders; KEYS[2] waiters
// ARGV[1] member ("" only pops a waiter); ARGV[2] max holders
// Returns the waiter entry to wake, or "".
var concReleaseScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= "" then redis.call("ZREM", KEYS[1], ARGV[1]) end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZCARD", KEYS[1]) < tonumber(ARGV[2]) then
  local w = redis.call("ZPOPMIN", KEYS[2])
  if #w > 0 then return w[1] end
end
return ""
`)

// throttleScript records on a task that it waits for a limit, without
// changing its state (unless ARGV[4] sets one), and counts the wait. A
// missing record is created PENDING with the task's meta fields.
//
// KEYS[1] task key
// ARGV[1] ttl (ms); ARGV[2] limit name; ARGV[3] until (unix ms);
// ARGV[4] new state ("" keeps it); ARGV[5] error text (written when ARGV[4]
// is set); ARGV[6..] meta field, value pairs for a missing record
// Returns the state the record has afterwards.
var throttleScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if st == "SUCCESS" or st == "FAILURE" or st == "REVOKED" then return st end
if not st then
  st = "PENDING"
  redis.call("HSET", KEYS[1], "state", st)
  for i = 6, #ARGV, 2 do redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if ARGV[4] ~= "" then
  st = ARGV[4]
  redis.call("HSET", KEYS[1], "state", st, "error", ARGV[5], "next_try", ARGV[3])
end
redis.call("HSET", KEYS[1], "throttled", ARGV[2], "throttled_until", ARGV[3])
redis.call("HINCRBY", KEYS[1], "throttles", 1)
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return st
`)
