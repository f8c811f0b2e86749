package config

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// go-redis writes its own log lines (a pub/sub connection discarded, a
// failed re-authentication, Sentinel failovers) with the standard logger,
// as raw "redis: ..." lines on stderr. RouteRedisLogs sends them through
// slog instead, like every other line baton writes.

var (
	redisLog     atomic.Pointer[slog.Logger]
	redisLogOnce sync.Once
)

// RouteRedisLogs makes go-redis log through l, at warn level with
// component=redis. go-redis has one logger per process: the last call
// wins, and it is safe to call at any time, concurrently too.
func RouteRedisLogs(l *slog.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}

// redisLogger is go-redis's Logging interface over the routed slog.Logger.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l := redisLog.Load()
	if l == nil {
		return
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	if ctx == nil {
		ctx = context.Background()
	}
	l.WarnContext(ctx, msg, "component", "redis")
}
