package backend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeats of long tasks. A running task with a heartbeat timeout is a
// member of the sorted set HeartbeatKey, scored by when its heartbeat is
// overdue; its task record holds the last details and the asynq delivery
// (id and queue) that runs it. A worker whose heartbeat stops (killed, hung)
// leaves its entry behind, and the fleet's heartbeat pass re-enqueues that
// delivery (see the root package's heartbeat.go).

// HeartbeatKey is the sorted set of running tasks that heartbeat, scored by
// the time (unix ms) their next heartbeat is due by. Members are task ids.
const HeartbeatKey = prefix + "heartbeats"

// Task record fields of heartbeats.
const (
	fHeartbeatAt       = "hb_at"
	fHeartbeatDetails  = "hb_details"
	fHeartbeatDelivery = "hb_dlv"
	fHeartbeatQueue    = "hb_queue"
)

// heartbeatKeyTTL keeps HeartbeatKey alive while anything heartbeats.
const heartbeatKeyTTL = 24 * time.Hour

// HeartbeatBegin registers delivery (an asynq task id on queue) of task id
// as heartbeating: its first heartbeat is due within timeout. It returns
// the details of the task's last heartbeat (by an earlier attempt), or nil.
func (b *Backend) HeartbeatBegin(ctx context.Context, id, queue, delivery string, timeout time.Duration) ([]byte, error) {
	pipe := b.rdb.Pipeline()
	last := pipe.HGet(ctx, TaskKey(id), fHeartbeatDetails)
	pipe.HSet(ctx, TaskKey(id), fHeartbeatDelivery, delivery, fHeartbeatQueue, queue)
	pipe.ZAdd(ctx, HeartbeatKey, redis.Z{Score: float64(time.Now().Add(timeout).UnixMilli()), Member: id})
	pipe.Expire(ctx, HeartbeatKey, heartbeatKeyTTL)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("backend: register heartbeat of %s: %w", id, err)
	}
	if v := last.Val(); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}

// Heartbeat records a heartbeat of task id with details (JSON, may be nil)
// and pushes its due time to now + timeout. A task no longer registered (it
// ended, or was re-enqueued for a missed heartbeat) is not registered again.
func (b *Backend) Heartbeat(ctx context.Context, id string, details []byte, timeout time.Duration) error {
	now := time.Now()
	pipe := b.rdb.Pipeline()
	f := []any{fHeartbeatAt, ms(now)}
	if details != nil {
		f = append(f, fHeartbeatDetails, string(details))
	}
	pipe.HSet(ctx, TaskKey(id), f...)
	pipe.ZAddXX(ctx, HeartbeatKey, redis.Z{Score: float64(now.Add(timeout).UnixMilli()), Member: id})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("backend: heartbeat of %s: %w", id, err)
	}
	return nil
}

// HeartbeatEnd unregisters task id (its attempt ended).
func (b *Backend) HeartbeatEnd(ctx context.Context, id string) error {
	if err := b.rdb.ZRem(ctx, HeartbeatKey, id).Err(); err != nil {
		return fmt.Errorf("backend: end heartbeat of %s: %w", id, err)
	}
	return nil
}

// OverdueHeartbeat is a task whose heartbeat is overdue.
type OverdueHeartbeat struct {
	ID       string
	Due      float64 // its score, for DropHeartbeat
	State    State
	Queue    string
	Delivery string
}

// OverdueHeartbeats lists up to limit tasks whose heartbeat was due before now.
func (b *Backend) OverdueHeartbeats(ctx context.Context, now time.Time, limit int) ([]OverdueHeartbeat, error) {
	zs, err := b.rdb.ZRangeByScoreWithScores(ctx, HeartbeatKey, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil || len(zs) == 0 {
		return nil, err
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HMGet(ctx, TaskKey(fmt.Sprint(z.Member)), fState, fHeartbeatQueue, fHeartbeatDelivery)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("backend: overdue heartbeats: %w", err)
	}
	out := make([]OverdueHeartbeat, len(zs))
	for i, z := range zs {
		v := cmds[i].Val()
		out[i] = OverdueHeartbeat{ID: fmt.Sprint(z.Member), Due: z.Score, State: State(str(at(v, 0))),
			Queue: str(at(v, 1)), Delivery: str(at(v, 2))}
	}
	return out, nil
}

// DropHeartbeat unregisters an overdue task, unless it heartbeat (or was
// registered again) since it was listed.
func (b *Backend) DropHeartbeat(ctx context.Context, o OverdueHeartbeat) error {
	c := &call{script: dropHeartbeatScript, keys: []string{HeartbeatKey}, args: []any{o.ID, strconv.FormatFloat(o.Due, 'f', -1, 64)}}
	if err := b.pipe.do(ctx, c); err != nil {
		return fmt.Errorf("backend: drop heartbeat of %s: %w", o.ID, err)
	}
	return nil
}

// dropHeartbeatScript removes a member of HeartbeatKey if its score is
// still the one given.
//
// KEYS[1] HeartbeatKey
// ARGV[1] task id; ARGV[2] score it was listed with
// Returns 1 when removed, else 0.
var dropHeartbeatScript = redis.NewScript(`
local s = redis.call("ZSCORE", KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call("ZREM", KEYS[1], ARGV[1]) end
return 0
`)
