package baton

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/redistest"
)

// TestAsynqRunTaskMessages pins the texts of asynq's RunTask errors that
// wakeWaiter tells apart: a task still running, and one pending already.
func TestAsynqRunTaskMessages(t *testing.T) {
	srv := redistest.MustStart(t, redistest.Options{})
	rdb := srv.Client(t, 0)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	_, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("pin", nil), asynq.TaskID("p1"))
	require.NoError(t, err)
	err = insp.RunTask("default", "p1")
	require.ErrorContains(t, err, asynqPending)

	started, release := make(chan struct{}), make(chan struct{})
	s := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, LogLevel: asynq.FatalLevel})
	require.NoError(t, s.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		close(started)
		<-release
		return nil
	})))
	defer s.Shutdown()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the task did not start")
	}
	err = insp.RunTask("default", "p1")
	close(release)
	require.ErrorContains(t, err, asynqRunning)
}

func TestKeyOfCapsLongKeys(t *testing.T) {
	k := KeyBy(func(s string) string { return s })
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'x'
	}
	got, ok := keyOf(k, &message{Args: []byte(`"` + string(long) + `"`)})
	require.True(t, ok)
	require.Len(t, got, len("sha256:")+64)
	got, ok = keyOf(k, &message{Args: []byte(`"short"`)})
	require.True(t, ok)
	require.Equal(t, "short", got)
	got, ok = keyOf(k, &message{Args: []byte(`"short"`), LimitKey: "override"})
	require.True(t, ok)
	require.Equal(t, "override", got)
	_, ok = keyOf(k, &message{Args: []byte(`{`)})
	require.False(t, ok, "arguments that do not decode: no key, the handler fails them")
}
