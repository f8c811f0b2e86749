package asynqx

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// nextMsg is a task message as a caller of Complete builds it.
func nextMsg(id, typ, q string, payload []byte) *TaskMessage {
	return &TaskMessage{Type: typ, Payload: payload, ID: id, Queue: q, Retry: 25, Timeout: 1800}
}

// TestFusedStepHandsOffAndAsynqAckStaysLocal: a handler that completes its
// step with Complete (ack + enqueue of the next step + wake-up) hands on in
// one call; asynq's own done for that task never reaches Redis, asynq logs
// nothing, its counters count both steps, and the queue ends empty.
func TestFusedStepHandsOffAndAsynqAckStaysLocal(t *testing.T) {
	const n = 30
	b := setup(t, Options{Concurrency: 5})
	ctx := context.Background()
	sub := b.rdb.Subscribe(ctx, "wake:test")
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	var woken atomic.Int32
	go func() {
		for range sub.Channel() {
			woken.Add(1)
		}
	}()

	firsts := b.enqueue(t, "default", "a", n)
	c := NewCompleter("")
	var seconds sync.Map
	_, lg := b.server(t, 5, nil, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if task.Type() == "b" {
			if _, dup := seconds.LoadOrStore(id, string(task.Payload())); dup {
				t.Errorf("step b %s ran twice", id)
			}
			return nil
		}
		res, err := b.hook.Complete(ctx, c, Completion{
			TaskID: id,
			Next:   []Next{{Msg: nextMsg("b-"+id, "b", "default", task.Payload())}},
			Wake:   "wake:test",
		})
		if err != nil {
			return err
		}
		if !res.Proceeded || !res.Acked || len(res.Enqueued) != 1 || !res.Enqueued[0] {
			return errors.New("complete did not ack and enqueue")
		}
		return nil
	})
	b.waitProcessed(t, "default", 2*n)
	for i, id := range firsts {
		p, ok := seconds.Load("b-" + id)
		require.True(t, ok, "step b of %s never ran", id)
		require.Equal(t, "payload "+strconv.Itoa(i), p)
	}
	doneSent := map[string]bool{}
	for _, id := range b.wire.sent(kindDone) {
		doneSent[id] = true
	}
	for _, id := range firsts {
		require.False(t, doneSent[id], "asynq's done of %s reached Redis after Complete", id)
	}
	require.Len(t, doneSent, n, "the b steps are acknowledged by asynq's done")
	require.EqualValues(t, n, b.hook.Stats().LocalAcks)
	b.requireQueueEmpty(t, "default")
	require.Contains(t, b.rdb.SMembers(ctx, allQueues).Val(), "default")
	waitFor(t, "a wake-up per completion", func() bool { return woken.Load() == n })
	b.waitIdle(t)
	require.Empty(t, lg.String())
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// waitIdle waits until the hook holds no task handed to asynq.
func (b *bundle) waitIdle(t *testing.T) {
	t.Helper()
	waitFor(t, "every task acknowledged", func() bool {
		b.hook.mu.Lock()
		defer b.hook.mu.Unlock()
		return len(b.hook.running) == 0 && len(b.hook.fused) == 0
	})
}

// TestFusedAckIsFinalWhateverTheHandlerReturns: a handler that fails after
// Complete does not make asynq retry the task: its retry is answered
// locally, the task stays done.
func TestFusedAckIsFinalWhateverTheHandlerReturns(t *testing.T) {
	b := setup(t, Options{Concurrency: 2})
	ctx := context.Background()
	ids := b.enqueue(t, "default", "a", 1)
	c := NewCompleter("")
	var runs atomic.Int32
	_, lg := b.server(t, 2, nil, func(ctx context.Context, task *asynq.Task) error {
		runs.Add(1)
		id, _ := asynq.GetTaskID(ctx)
		if _, err := b.hook.Complete(ctx, c, Completion{TaskID: id}); err != nil {
			return err
		}
		return errors.New("failed after completing")
	})
	waitFor(t, "asynq's retry answered locally", func() bool { return b.hook.Stats().LocalAcks == 1 })
	require.Empty(t, b.wire.sent(kindRetry))
	require.Zero(t, b.rdb.ZCard(ctx, retryKey("default")).Val())
	require.Zero(t, b.rdb.Exists(ctx, taskKey("default", ids[0])).Val())
	require.EqualValues(t, 1, runs.Load())
	b.waitProcessed(t, "default", 1)
	require.Empty(t, lg.String())
}

// TestFusedPrologue: the prologue runs first with its own KEYS and ARGV and
// its reply comes back; returning false as a second value stops the call
// before anything is acknowledged or enqueued; an error reply fails it.
func TestFusedPrologue(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	c := NewCompleter(`redis.call("SET", KEYS[1], ARGV[1])
if ARGV[2] == "stop" then
	return "stopped", false
end
if ARGV[2] == "fail" then
	return redis.error_reply("ERR refused by the prologue")
end
return {ARGV[2], #KEYS, #ARGV}`)
	next := func(id string) []Next { return []Next{{Msg: nextMsg(id, "t", "default", nil)}} }

	res, err := b.hook.Complete(ctx, c, Completion{Keys: []string{"rec:1"}, Args: []any{"v1", "go"}, Next: next("n1")})
	require.NoError(t, err)
	require.Equal(t, Completed{Reply: []any{"go", int64(1), int64(2)}, Proceeded: true, Enqueued: []bool{true}}, res)
	require.Equal(t, "v1", b.rdb.Get(ctx, "rec:1").Val())
	info, err := b.insp.GetTaskInfo("default", "n1")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, info.State)

	res, err = b.hook.Complete(ctx, c, Completion{Keys: []string{"rec:2"}, Args: []any{"v2", "stop"}, Next: next("n2")})
	require.NoError(t, err)
	require.Equal(t, Completed{Reply: "stopped"}, res)
	require.Equal(t, "v2", b.rdb.Get(ctx, "rec:2").Val())
	require.Zero(t, b.rdb.Exists(ctx, taskKey("default", "n2")).Val())

	_, err = b.hook.Complete(ctx, c, Completion{Keys: []string{"rec:3"}, Args: []any{"v3", "fail"}, Next: next("n3")})
	require.ErrorContains(t, err, "refused by the prologue")
	require.Zero(t, b.rdb.Exists(ctx, taskKey("default", "n3")).Val())
}

// TestFusedWritesWhatAsynqWrites: a task enqueued (now or later) by the
// fused script is stored as asynq.Client stores it, and a task it
// acknowledges ends as asynq's done ends it (unique lock included).
func TestFusedWritesWhatAsynqWrites(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	b.loadAsynqScripts(t)
	c := NewCompleter("")
	ac := asynq.NewClientFromRedisClient(b.rdb)
	at := time.Now().Add(time.Hour)

	_, err := ac.Enqueue(asynq.NewTask("t", []byte("p")), asynq.TaskID("ref-now"), asynq.Queue("q"))
	require.NoError(t, err)
	_, err = ac.Enqueue(asynq.NewTask("t", []byte("p")), asynq.TaskID("ref-later"), asynq.Queue("q"), asynq.ProcessAt(at))
	require.NoError(t, err)
	res, err := b.hook.Complete(ctx, c, Completion{Next: []Next{
		{Msg: nextMsg("our-now", "t", "q", []byte("p"))},
		{Msg: nextMsg("our-later", "t", "q", []byte("p")), ProcessAt: at},
	}})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, res.Enqueued)
	for _, pair := range [][2]string{{"ref-now", "our-now"}, {"ref-later", "our-later"}} {
		ref := b.rdb.HGetAll(ctx, taskKey("q", pair[0])).Val()
		got := b.rdb.HGetAll(ctx, taskKey("q", pair[1])).Val()
		require.Equal(t, keysOf(ref), keysOf(got), pair[1])
		require.Equal(t, ref["state"], got["state"], pair[1])
		rm, err := Decode([]byte(ref["msg"]))
		require.NoError(t, err)
		gm, err := Decode([]byte(got["msg"]))
		require.NoError(t, err)
		rm.ID = gm.ID
		require.Equal(t, rm, gm)
		refInfo, err := b.insp.GetTaskInfo("q", pair[0])
		require.NoError(t, err)
		ourInfo, err := b.insp.GetTaskInfo("q", pair[1])
		require.NoError(t, err)
		require.Equal(t, refInfo.State, ourInfo.State)
		require.Equal(t, refInfo.NextProcessAt, ourInfo.NextProcessAt)
		require.Equal(t, refInfo.MaxRetry, ourInfo.MaxRetry)
		require.Equal(t, refInfo.Timeout, ourInfo.Timeout)
	}
	require.ElementsMatch(t, []string{"ref-now", "our-now"}, b.rdb.LRange(ctx, pendingKey("q"), 0, -1).Val())
	require.Equal(t, b.rdb.ZScore(ctx, scheduledKey("q"), "ref-later").Val(), b.rdb.ZScore(ctx, scheduledKey("q"), "our-later").Val())
	require.Contains(t, b.rdb.SMembers(ctx, allQueues).Val(), "q")

	// Acknowledgements: asynq's done of one task, Complete of another, and
	// Complete of a task holding a unique lock (asynq's doneUnique).
	_, err = ac.Enqueue(asynq.NewTask("u", []byte("x")), asynq.TaskID("u1"), asynq.Queue("q"), asynq.Unique(time.Hour))
	require.NoError(t, err)
	uniqueKey := "asynq:{q}:unique:u:" + md5hex("x")
	require.Equal(t, "u1", b.rdb.Get(ctx, uniqueKey).Val())
	ids := b.dequeueAll(t, "q", 3) // ref-now, our-now, u1
	require.Equal(t, []string{"ref-now", "our-now", "u1"}, ids)
	require.NoError(t, b.done(t, "q", "ref-now"))
	for _, id := range ids[1:] {
		res, err := b.hook.Complete(ctx, c, Completion{TaskID: id})
		require.NoError(t, err)
		require.True(t, res.Acked, id)
		require.NoError(t, b.done(t, "q", id), "asynq's own done after Complete")
	}
	require.EqualValues(t, 2, b.hook.Stats().LocalAcks)
	require.Len(t, b.wire.sent(kindDone), 1, "%v", b.wire.sent(kindDone))
	b.requireQueueEmpty(t, "q")
	for _, id := range ids {
		require.Zero(t, b.rdb.Exists(ctx, taskKey("q", id)).Val(), id)
	}
	require.Zero(t, b.rdb.Exists(ctx, uniqueKey).Val(), "unique lock kept")
	day := processedKey("q", time.Now())
	require.Equal(t, "3", b.rdb.Get(ctx, day).Val())
	require.Equal(t, "3", b.rdb.Get(ctx, processedTotalKey("q")).Val())
	require.Greater(t, b.rdb.TTL(ctx, day).Val(), statsTTL-time.Hour)
	qi, err := b.insp.GetQueueInfo("q")
	require.NoError(t, err)
	require.Equal(t, 3, qi.Processed)
	require.Equal(t, 2, qi.Scheduled, "ref-later and our-later")
}

// TestFusedAckOfATaskNoLongerActive: when asynq no longer holds the task
// as active (its lease was lost and recovery moved it), Complete still
// hands on, reports Acked false, and asynq's own ack stays local.
func TestFusedAckOfATaskNoLongerActive(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	b.loadAsynqScripts(t)
	b.enqueue(t, "default", "a", 1)
	id := b.dequeueOnce(t, "default")
	require.NoError(t, b.rdb.LRem(ctx, activeKey("default"), 0, id).Err()) // as asynq's recoverer would
	res, err := b.hook.Complete(ctx, NewCompleter(""), Completion{TaskID: id, Next: []Next{{Msg: nextMsg("next", "b", "default", nil)}}})
	require.NoError(t, err)
	require.True(t, res.Proceeded)
	require.False(t, res.Acked)
	require.Equal(t, []bool{true}, res.Enqueued)
	require.Zero(t, b.rdb.Exists(ctx, processedTotalKey("default")).Val(), "counted as processed")
	require.NoError(t, b.done(t, "default", id))
	require.EqualValues(t, 1, b.hook.Stats().LocalAcks)
	require.Empty(t, b.wire.sent(kindDone))
}

// TestFusedEnqueueConflict: a next task whose id exists is not enqueued
// (asynq's id conflict) and the existing one is untouched; the others are.
func TestFusedEnqueueConflict(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	ac := asynq.NewClientFromRedisClient(b.rdb)
	_, err := ac.Enqueue(asynq.NewTask("t", []byte("first")), asynq.TaskID("dup"))
	require.NoError(t, err)
	before := b.rdb.HGetAll(ctx, taskKey("default", "dup")).Val()
	res, err := b.hook.Complete(ctx, NewCompleter(""), Completion{Next: []Next{
		{Msg: nextMsg("dup", "t", "default", []byte("second"))},
		{Msg: nextMsg("fresh", "t", "default", nil)},
	}})
	require.NoError(t, err)
	require.Equal(t, []bool{false, true}, res.Enqueued)
	require.Equal(t, before, b.rdb.HGetAll(ctx, taskKey("default", "dup")).Val())
	require.EqualValues(t, 2, b.rdb.LLen(ctx, pendingKey("default")).Val())
}

// TestCompleteRefusals: what Complete cannot do fails with an error that
// says to take the multi-trip path, before anything is written.
func TestCompleteRefusals(t *testing.T) {
	b := setup(t, Options{Concurrency: 10})
	ctx := context.Background()
	c := NewCompleter("")
	_, err := b.hook.Complete(ctx, c, Completion{TaskID: "never-dequeued"})
	require.ErrorIs(t, err, ErrUnknownTask)

	ac := asynq.NewClientFromRedisClient(b.rdb)
	_, err = ac.Enqueue(asynq.NewTask("kept", nil), asynq.TaskID("kept"), asynq.Retention(time.Hour))
	require.NoError(t, err)
	require.Equal(t, "kept", b.dequeueOnce(t, "default"))
	_, err = b.hook.Complete(ctx, c, Completion{TaskID: "kept"})
	require.ErrorIs(t, err, ErrNotFusable)
	require.EqualValues(t, 1, b.rdb.LLen(ctx, activeKey("default")).Val())

	for _, bad := range []*TaskMessage{
		nil,
		{Type: " ", ID: "x", Queue: "q", Timeout: 1},
		{Type: "t", Queue: "q", Timeout: 1},
		{Type: "t", ID: "x", Timeout: 1},
		{Type: "t", ID: "x", Queue: "q"},
		{Type: "t", ID: "x", Queue: "q", Timeout: 1, UniqueKey: "asynq:{q}:unique:t:"},
		{Type: "t", ID: "x", Queue: "q", Timeout: 1, GroupKey: "g"},
	} {
		_, err := b.hook.Complete(ctx, c, Completion{Next: []Next{{Msg: bad}}})
		require.ErrorContains(t, err, "next task 0", "%+v", bad)
	}
	require.Zero(t, b.rdb.Exists(ctx, taskKey("q", "x")).Val())

	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{b.srv.Addr}})
	t.Cleanup(func() { _ = cl.Close() })
	require.False(t, SupportsFused(cl))
	require.True(t, SupportsFused(b.rdb))
	ch, err := New(cl, Options{Concurrency: 1, Linger: -1})
	require.NoError(t, err)
	require.False(t, ch.Fused())
	_, err = ch.Complete(ctx, c, Completion{})
	require.ErrorIs(t, err, ErrFusedUnavailable)
	require.NoError(t, ch.Close(ctx))
}

// TestFusedAfterScriptFlush: the fused script loads itself again when Redis
// forgot it, in a group commit and without one.
func TestFusedAfterScriptFlush(t *testing.T) {
	for _, linger := range []time.Duration{0, -1} {
		b := setup(t, Options{Concurrency: 10, Linger: linger})
		ctx := context.Background()
		c := NewCompleter("")
		_, err := b.hook.Complete(ctx, c, Completion{Next: []Next{{Msg: nextMsg("a", "t", "default", nil)}}})
		require.NoError(t, err)
		require.NoError(t, b.rdb.ScriptFlush(ctx).Err())
		res, err := b.hook.Complete(ctx, c, Completion{Next: []Next{{Msg: nextMsg("b", "t", "default", nil)}}})
		require.NoError(t, err, "linger %v", linger)
		require.Equal(t, []bool{true}, res.Enqueued)
	}
}
