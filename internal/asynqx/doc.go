// Package asynqx holds what depends on asynq's private Redis layout
// (asynq v0.26.0, AsynqVersion): the task message codec, a go-redis hook on
// an asynq server's own client that batches its dequeues and group-commits
// its acknowledgements, and a fused step completion script. It is the
// building block of issue 14's throughput work; the integration into baton's
// worker follows the rules below.
//
// Everything is pinned to asynq v0.26.0 by pin_test.go (the scripts the hook
// intercepts, by SHA1, with their KEYS and ARGV layout, as asynq really calls
// them) and codec_test.go (asynq's protobuf message, field by field, against
// asynq's own generated type). An asynq upgrade fails those tests with a
// message saying what to re-check. At run time an unrecognised script (a new
// SHA1) simply passes through: the optimisation it carried is off, nothing
// else changes.
//
// # Message codec
//
// Encode and Decode read and write asynq's stored TaskMessage (the hash
// field "msg") with protowire: Encode gives the bytes of protobuf's
// deterministic marshalling of asynq's own message, Decode accepts exactly
// what protobuf's unmarshalling accepts (FuzzDecode checks both against
// asynq's generated type). A message written here is read back identically
// by asynq's Inspector and run by an asynq.Server; one written by
// asynq.Client decodes here.
//
// # Batched dequeue
//
// asynq's processor dequeues one task per round trip from one goroutine.
// The hook answers that call itself: from a per-queue buffer when it holds a
// task of the queue asked for (no round trip), else with one script
// (batchDequeueScript) that moves up to K tasks from pending to active and
// returns them; the first goes to asynq, the rest to the buffer.
//
// What it guarantees:
//   - Same state as asynq's dequeue, task by task: RPOPLPUSH pending→active,
//     state "active", pending_since removed, ZADD lease with the expiry asynq
//     chose for the call that triggered the batch; a paused queue gives
//     nothing. asynqmon and the Inspector see a buffered task as active, as
//     they see any task between asynq's dequeue and its start.
//   - K is the slots free right now: Concurrency − tasks handed to asynq and
//     not acknowledged − tasks buffered, at most BatchMax (100). Every
//     buffered task therefore has a free slot, and asynq's processor (which
//     dequeues whenever it holds a free slot) takes them within
//     microseconds. Tasks asynq drops without an acknowledgement (a lost
//     lease) stop counting one heartbeat later (the hook reads asynq's
//     heartbeat, which lists the tasks it runs).
//   - Bounded wait: a buffered task not taken within BufferAge (1 s, at most
//     BufferAgeMax 2 s) goes back to the head of pending (asynq's requeue,
//     and its pending_since restored), in the order it would have been
//     served. Why 2 s at most: baton's orphan recovery (recover.go) re-runs
//     an active task no live server has listed for 8 s, and asynq lists a
//     started task within one heartbeat (5 s): a task must start within 3 s
//     of its dequeue. asynq's lease: the Redis lease of a task served from
//     the buffer after x ≤ BufferAge is x older than asynq's own view of it;
//     the next heartbeat (≤ 5 s) extends both, and asynq's recoverer only
//     reclaims a lease expired for 30 s, so no two workers ever hold it.
//   - Shutdown: Close (after the server's Shutdown) gives every buffered
//     task back at once; while asynq's shutdown waits for running tasks the
//     expiry gives them back within BufferAge. A killed process leaves its
//     buffered tasks active and unlisted, exactly like its running tasks:
//     baton's orphan recovery re-runs them (8–11 s), else asynq's lease
//     recovery (60–90 s). At-least-once delivery is unchanged.
//   - Queues: a batch comes from the queue asynq's processor asked for, in
//     its weighted or strict order; another queue's dequeue is served from
//     that queue's buffer or from Redis. A task moved before its queue is
//     paused still runs (as an in-flight task does with asynq).
//
// Costs: one script call per batch (four commands per task inside it, as
// asynq's), one timer while anything is buffered. Works on Redis Cluster:
// every key of a batch is in its queue's {q} slot.
//
// # Group-commit acknowledgement
//
// asynq's acknowledgements (done, done with a unique lock, mark as
// complete, retry, archive, requeue) from concurrent workers go to Redis in
// shared pipelines: one goroutine sends what is queued the moment it is
// free, and what arrives meanwhile goes in the next pipeline. Each call is
// still asynq's own EVALSHA, so it is as atomic as before and its caller
// gets its own reply (OK, NOT FOUND, …); a NOSCRIPT reply goes back to the
// caller, whose go-redis then sends the script's text (that EVAL passes
// through). Close sends what is queued. Linger (default 0) would wait for
// more calls before sending: 100 µs and 200 µs gave larger groups but no
// less CPU per task, lower throughput at concurrency 10 and latency added
// when idle (see Measured), so 0 it is. Linger < 0 turns group commit off.
//
// # Fused step completion
//
// Hook.Complete runs one script (a Completer) on a single Redis node that,
// atomically: runs the caller's Lua prologue with its own KEYS and ARGV
// (baton's SUCCESS record and hand-off bookkeeping, passed by the
// integration as Completion.Keys/Args); acknowledges the current task as
// asynq's done does (LREM active, ZREM lease, DEL its hash, the processed
// counters, its unique lock); enqueues the next tasks as asynq.Client does
// (pending, or scheduled for a later ProcessAt; an existing id is a conflict
// and is left alone); and publishes the wake-up channel once per queue that
// got a pending task. The prologue returns reply[, proceed]: proceed false
// stops the call before anything of asynq's is touched (the caller takes
// the multi-trip path, e.g. to hand on a result another delivery stored); a
// redis.error_reply fails it (what the prologue wrote stays: validate
// first). An acknowledgement that finds the task no longer active (its
// lease was lost and it was recovered) still enqueues: what the prologue
// recorded is handed on, and the re-delivery finds the record.
//
// When asynq then acknowledges that task (done, or retry/archive/requeue if
// the handler failed afterwards), the hook answers OK without Redis; asynq's
// own script would find it gone, log NOT FOUND and have its syncer retry.
//
// Fallback rules (the caller runs its current multi-trip path: its own
// writes, asynq.Client's enqueue, asynq's own acknowledgement):
//   - ErrFusedUnavailable: the client is a Redis Cluster (or a Ring).
//     asynq's keys are in the {queue} slot and baton's in {workflow}; one
//     script cannot hold both. SupportsFused tells in advance: a single node
//     or a Sentinel-managed one (*redis.Client) yes, Cluster no.
//   - ErrUnknownTask: the task was not handed to asynq by this hook (or
//     asynq has acknowledged it already).
//   - ErrNotFusable: the task has a Retention (asynq marks it completed).
//   - Any other error: nothing is known of what ran, and asynq's own
//     acknowledgement goes to Redis as usual; a step whose record was
//     written is handed on by the re-delivery, as today.
//
// Concurrent Complete calls share round trips in the group commit.
//
// # Integration rules
//
//   - One Hook per asynq.Server, on that server's own client (the hook
//     counts slots against Options.Concurrency, which must equal the
//     server's), added after baton's long-poll hook: the long poll then sees
//     asynq's dequeue and the hook's answers (redis.Nil when nothing was
//     there, as asynq's), and the batch script reaches Redis through the
//     rest of the chain only.
//   - Close the hook after the server's Shutdown.
//   - A handler that completes with Complete passes asynq.GetTaskID of its
//     context as TaskID, and returns normally afterwards.
//
// # Measured
//
// `make bench/asynqx` (internal/asynqx/asynqxbench) on a throwaway
// redis-server 7.0: one asynq.Server with Concurrency c processing 20,000
// pre-enqueued no-op tasks, without and with the hook; and 5,000 naive
// chains of two steps (1 KB payload; step a enqueues step b with
// asynq.Client on the worker's client, or with Complete), timed until
// asynq's processed counter has every task. Medians of 5 runs in one
// invocation, order alternating, on a 2-core machine shared with other
// work: read the ratios, round trips and CPU, not the rates. Round trips
// are the worker client's (a command or a pipeline each, background
// heartbeats included); CPU is this process's plus redis-server's.
//
//	                                 tasks/s (×asynq)     round trips/task     CPU µs/task
//	process, no-op       c=10/50/100
//	  asynq                          3922  3770  3841     2.00  2.00  2.00     235 243 232
//	  asynq + hook                   1.93× 2.81× 3.21×    0.62  0.13  0.07     127  71  56
//	chains of 2          c=10/50/100
//	  asynq, enqueue + done          3261  2287  2634     2.50  2.50  2.50     307 365 345
//	  asynq + hook                   1.56× 2.11× 2.17×    1.19  0.66  0.60     195 146 127
//	  asynq + hook + fused           1.49× 2.39× 2.72×    0.62  0.14  0.07     191 125 129
//
// Batches averaged 3, 16 and 31 tasks and group commits 3, 14 and 27
// calls at c = 10, 50 and 100. With a 200 µs linger (same run) the group
// commits grew (6, 20, 36 calls) but CPU per task did not fall and
// throughput was lower at c = 10 (1.56× against 1.93×), hence no linger.
// The fused chain halves the round trips of the hooked one at every
// concurrency; its throughput gain shows from c = 50 on (at c = 10 the
// difference is within this machine's noise).
package asynqx
