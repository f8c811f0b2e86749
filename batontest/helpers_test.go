package batontest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/batontest"
)

// newEnv is batontest.New on the package's real redis-server.
func newEnv(t *testing.T, opts *batontest.Options) *batontest.Env {
	t.Helper()
	var o batontest.Options
	if opts != nil {
		o = *opts
	}
	o.RedisURL = redisURL
	return batontest.New(t, &o)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// fakeTB is a testing.TB that records failures instead of failing the
// test, to check the helpers' failure messages. Fatal and FailNow end the
// goroutine, as the real ones do.
type fakeTB struct {
	testing.TB // the real test's: Context, Cleanup, Name

	mu    sync.Mutex
	fails []string
	logs  []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) fail(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = append(f.fails, s)
}

func (f *fakeTB) Errorf(format string, args ...any) { f.fail(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Error(args ...any)                 { f.fail(fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.fail(fmt.Sprint(args...))
	runtime.Goexit()
}

func (f *fakeTB) FailNow() {
	f.fail("FailNow")
	runtime.Goexit()
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Log(args ...any) { f.Logf("%s", fmt.Sprint(args...)) }

// failures runs body with a fakeTB, as a test body (in a goroutine of its
// own, so that Fatal can end it), and returns what failed, joined.
func failures(t *testing.T, body func(tb testing.TB)) (string, *fakeTB) {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.fails, "\n"), f
}
