// Command soak runs baton under sustained load and reports whether the
// worker's memory and goroutines stay flat, that every key baton wrote has a
// TTL, and how much Redis memory one finished task's record costs.
//
//	go run ./internal/soak              # 200,000 tasks
//	go run ./internal/soak -n 20000     # a quicker look
//
// It starts its own redis-server, a worker in this process (so its heap and
// goroutines can be read) and a producer that keeps ~2,000 tasks queued.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/redistest"
)

type sample struct {
	done       int64
	heapMB     float64
	goroutines int
	redisMB    float64
}

func main() {
	n := flag.Int("n", 200000, "tasks to run")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		return err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()

	var done atomic.Int64
	echo := baton.NewTask("soak", func(_ context.Context, i int) (int, error) {
		done.Add(1)
		return i, nil
	}, nil)
	w, err := baton.NewWorker(rdb, &baton.WorkerOptions{Concurrency: 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if err := w.Register(echo); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	c, err := baton.NewClient(rdb, nil)
	if err != nil {
		return err
	}
	baseRedis := redisMemory(ctx, rdb)

	// Producer: keep the backlog near 2,000.
	go func() {
		for i := 0; i < n; i++ {
			for int64(i)-done.Load() > 2000 {
				time.Sleep(time.Millisecond)
			}
			if _, err := echo.Enqueue(ctx, c, i, nil); err != nil {
				fmt.Fprintln(os.Stderr, "enqueue:", err)
				return
			}
		}
	}()

	start := time.Now()
	var samples []sample
	next := int64(n / 10)
	for done.Load() < int64(n) {
		time.Sleep(20 * time.Millisecond)
		if d := done.Load(); d >= next || d >= int64(n) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s := sample{done: d, heapMB: float64(ms.HeapInuse) / (1 << 20), goroutines: runtime.NumGoroutine(), redisMB: redisMemory(ctx, rdb) / (1 << 20)}
			samples = append(samples, s)
			fmt.Printf("%8d tasks  %6.1fs  heap %6.1f MiB  goroutines %4d  redis %7.1f MiB\n", s.done, time.Since(start).Seconds(), s.heapMB, s.goroutines, s.redisMB)
			next += int64(n / 10)
		}
	}
	elapsed := time.Since(start)
	w.Shutdown()
	_ = c.Close()

	// Every key baton wrote has a TTL.
	var noTTL, total int
	iter := rdb.Scan(ctx, 0, "baton:*", 1000).Iterator()
	for iter.Next(ctx) {
		total++
		if ttl, _ := rdb.PTTL(ctx, iter.Val()).Result(); ttl < 0 {
			noTTL++
			if noTTL <= 5 {
				fmt.Println("no TTL:", iter.Val())
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	records := 0
	iter = rdb.Scan(ctx, 0, "baton:task:*", 1000).Iterator()
	for iter.Next(ctx) {
		records++
	}
	perTask := (redisMemory(ctx, rdb) - baseRedis) / float64(max(records, 1))
	first, last := samples[0], samples[len(samples)-1]
	fmt.Printf("\n%d tasks in %s (%.0f/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("worker heap: %.1f MiB after %d tasks, %.1f MiB after %d (Δ %+.1f MiB)\n", first.heapMB, first.done, last.heapMB, last.done, last.heapMB-first.heapMB)
	fmt.Printf("goroutines: %d → %d\n", first.goroutines, last.goroutines)
	fmt.Printf("baton keys: %d, without TTL: %d\n", total, noTTL)
	fmt.Printf("result backend: %d task records, %.0f bytes of Redis memory per finished task\n", records, perTask)
	if noTTL > 0 {
		return fmt.Errorf("%d keys without a TTL", noTTL)
	}
	return nil
}

func redisMemory(ctx context.Context, rdb *redis.Client) float64 {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
