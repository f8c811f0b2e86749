package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/batonhq/baton"
)

// chordSize is the number of header tasks of each W4 chord.
const chordSize = 10

// runW4: N/100 chords of 10 header tasks and a body that receives the
// ordered header results.
func runW4(ctx context.Context, env *redisEnv, o Options) ([]Row, string, error) {
	n := o.N / 100
	b, a, err := runPair(ctx, env, o, "W4 chords",
		func(ctx context.Context) (figures, error) { return batonChords(ctx, env, n, o.Concurrency) },
		func(ctx context.Context) (figures, error) { return asynqChords(ctx, env, n, o.Concurrency) })
	if err != nil {
		return nil, "", err
	}
	const base = "asynq naive chord, 1ms poll"
	name := fmt.Sprintf("%d chords of %d+1", n, chordSize)
	return []Row{
		newRow("W4", name, "chords/s", rates(b), base, rates(a), &Target{Min: 600}),
		newRow("W4", "chord latency p50", "ms", p50s(b), base, p50s(a), nil),
		newRow("W4", "chord latency p99", "ms", p99s(b), base, p99s(a), nil),
	}, "", nil
}

func chordTasks() (*baton.Task[part, part], *baton.Task[[]part, summary]) {
	header := baton.NewTask("bench_part", func(_ context.Context, p part) (part, error) { return p, nil }, nil)
	body := baton.NewTask("bench_join", func(_ context.Context, ps []part) (summary, error) { return summary{N: len(ps)}, nil }, nil)
	return header, body
}

func batonChords(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	header, body := chordTasks()
	wrdb := env.client()
	defer wrdb.Close()
	w, err := batonWorker(wrdb, conc, env.observers, header, body)
	if err != nil {
		return figures{}, err
	}
	if err := w.Start(); err != nil {
		return figures{}, err
	}
	defer w.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return figures{}, err
	}
	defer c.Close()
	c.Declare(header, body)
	elapsed, lat, err := submitAndWait(ctx, c, n,
		func() baton.Canvas {
			hs := make([]baton.Canvas, chordSize)
			for i := range hs {
				hs[i] = header.S(part{I: i}, nil)
			}
			return baton.Chord(baton.Group(hs...), body.Sig(nil))
		},
		func(r *baton.Record) error {
			var s summary
			if err := json.Unmarshal(r.Result, &s); err != nil || s.N != chordSize {
				return fmt.Errorf("chord result is %s, want n=%d", r.Result, chordSize)
			}
			return nil
		})
	if err != nil {
		return figures{}, err
	}
	f := figures{rate: float64(n) / elapsed.Seconds()}
	f.p50, f.p99 = latencyFigures(lat)
	return f, nil
}

// chordMsg is the naive asynq chord's header payload.
type chordMsg struct {
	C  int   `json:"c"`
	I  int   `json:"i"`
	T0 int64 `json:"t0"`
}

type joinMsg struct {
	C       int               `json:"c"`
	T0      int64             `json:"t0"`
	Results []json.RawMessage `json:"results"`
}

// asynqChords is the naive chord: each header stores its result in a hash
// and reads the hash's size in one MULTI; the header that completes it
// enqueues the body with the ordered results.
func asynqChords(ctx context.Context, env *redisEnv, n, conc int) (figures, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	wrdb := env.client()
	defer wrdb.Close()
	wc := asynq.NewClientFromRedisClient(wrdb)
	lat := make([]time.Duration, n)
	cnt := newCounter(n)
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench_part", func(ctx context.Context, t *asynq.Task) error {
		var m chordMsg
		if err := json.Unmarshal(t.Payload(), &m); err != nil {
			return err
		}
		res, err := json.Marshal(part{I: m.I})
		if err != nil {
			return err
		}
		key := "bench:chord:" + strconv.Itoa(m.C)
		tx := wrdb.TxPipeline()
		tx.HSet(ctx, key, strconv.Itoa(m.I), res)
		size := tx.HLen(ctx, key)
		tx.Expire(ctx, key, time.Hour)
		if _, err := tx.Exec(ctx); err != nil {
			return err
		}
		if size.Val() != chordSize {
			return nil
		}
		all, err := wrdb.HGetAll(ctx, key).Result()
		if err != nil {
			return err
		}
		j := joinMsg{C: m.C, T0: m.T0, Results: make([]json.RawMessage, chordSize)}
		for i := range chordSize {
			j.Results[i] = json.RawMessage(all[strconv.Itoa(i)])
		}
		p, err := json.Marshal(j)
		if err != nil {
			return err
		}
		_, err = wc.EnqueueContext(ctx, asynq.NewTask("bench_join", p), asynq.Retention(time.Hour))
		return err
	})
	mux.HandleFunc("bench_join", func(_ context.Context, t *asynq.Task) error {
		var j joinMsg
		if err := json.Unmarshal(t.Payload(), &j); err != nil {
			return err
		}
		ps := make([]part, len(j.Results))
		for i, r := range j.Results {
			if err := json.Unmarshal(r, &ps[i]); err != nil {
				return err
			}
		}
		res, err := json.Marshal(summary{N: len(ps)})
		if err != nil {
			return err
		}
		if _, err := t.ResultWriter().Write(res); err != nil {
			return err
		}
		lat[j.C] = time.Since(time.Unix(0, j.T0))
		cnt.inc()
		return nil
	})
	srv := asynqServer(wrdb, conc, naivePoll)
	if err := srv.Start(mux); err != nil {
		return figures{}, err
	}
	defer srv.Shutdown()
	rdb := env.client()
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	if err := parallel(n, enqueueGoroutines, func(ci int) error {
		t0 := time.Now().UnixNano()
		for i := range chordSize {
			p, err := json.Marshal(chordMsg{C: ci, I: i, T0: t0})
			if err != nil {
				return err
			}
			if _, err := c.EnqueueContext(ctx, asynq.NewTask("bench_part", p)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return figures{}, fmt.Errorf("enqueue: %w", err)
	}
	if err := awaitDrained(ctx, rdb, cnt); err != nil {
		return figures{}, err
	}
	f := figures{rate: float64(n) / time.Since(start).Seconds()}
	f.p50, f.p99 = latencyFigures(lat)
	return f, nil
}
