package batontest_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/batontest"
)

// WelcomeArgs are the arguments of the "send_welcome" task.
type WelcomeArgs struct {
	To string `json:"to"`
}

// NewSendWelcome is the task that mails the welcome message through send;
// tests give it a fake. A mail server that says "try later" is retried a
// minute later.
func NewSendWelcome(send func(ctx context.Context, to string) error) *baton.Task[WelcomeArgs, string] {
	return baton.NewTask("send_welcome", func(ctx context.Context, a WelcomeArgs) (string, error) {
		if err := send(ctx, a.To); err != nil {
			return "", err
		}
		return "sent to " + a.To, nil
	}, &baton.TaskOptions{MaxRetries: 3, RetryDelay: baton.FixedDelay(time.Minute)})
}

// Signup is the code under test: it enqueues the welcome message.
func Signup(ctx context.Context, c *baton.Client, email string) error {
	_, err := NewSendWelcome(nil).Enqueue(ctx, c, WelcomeArgs{To: email}, nil)
	return err
}

// flakyMailer fails its first call, as a busy mail server does.
func flakyMailer() func(context.Context, string) error {
	var calls atomic.Int32
	return func(context.Context, string) error {
		if calls.Add(1) == 1 {
			return errors.New("421 try again later")
		}
		return nil
	}
}

// TestSignupSendsWelcome is the README's "Testing your tasks" test.
func TestSignupSendsWelcome(t *testing.T) {
	env := batontest.New(t, &batontest.Options{FastForward: true})
	env.Register(NewSendWelcome(flakyMailer()))

	require.NoError(t, Signup(t.Context(), env.Client(), "ada@example.com"))
	queued := batontest.RequireEnqueued(t, env, "send_welcome", WelcomeArgs{To: "ada@example.com"}, nil)

	// The first attempt fails; its retry, due in a minute, runs at once.
	env.DrainUntilIdle(t)
	rec := batontest.RequireRecord(t, env, queued[0].ID, baton.Success)
	require.Equal(t, 1, rec.Retries)
	batontest.RequireNotEnqueued(t, env, "send_welcome", nil, nil)
}

// busyMailer always asks to try later.
func busyMailer(context.Context, string) error { return errors.New("421 try again later") }

// TestSendWelcomeHandler is the README's test of one handler, in process.
func TestSendWelcomeHandler(t *testing.T) {
	sent, err := batontest.Run(t, NewSendWelcome(busyMailer), WelcomeArgs{To: "bob@example.com"})
	require.EqualError(t, err, "421 try again later")
	require.Empty(t, sent)
}

// The README's test as it runs when BATONTEST_REDIS_URL names a real Redis.
func TestSignupSendsWelcomeOnRealRedis(t *testing.T) {
	t.Setenv(batontest.RedisURLEnv, redisURL)
	TestSignupSendsWelcome(t)
}

// Example tests a task that retries after a minute, in milliseconds, on the
// embedded Redis a test gets by default. In a test, batontest.New(t, opts)
// opens the Env and closes it when the test ends.
func Example() {
	ctx := context.Background()
	env, err := batontest.Open(ctx, &batontest.Options{FastForward: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.Close()
	env.Register(NewSendWelcome(flakyMailer()))

	if err := Signup(ctx, env.Client(), "ada@example.com"); err != nil {
		fmt.Println(err)
		return
	}
	queued, err := env.Queued(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, q := range queued {
		fmt.Println(q.State, q.Kind, string(q.Args), "on", q.Queue)
	}

	if err := env.Drain(ctx); err != nil {
		fmt.Println(err)
		return
	}
	rec, err := env.Client().Get(ctx, queued[0].ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.State, string(rec.Result), "after", rec.Retries, "retry")
	// Output:
	// pending send_welcome {"to":"ada@example.com"} on default
	// SUCCESS "sent to ada@example.com" after 1 retry
}

// ExampleEnv_RunCanvas runs a chord to its end and reads its result.
func ExampleEnv_RunCanvas() {
	ctx := context.Background()
	env, err := batontest.Open(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer env.Close()
	env.Register(square, sum)

	_, rec, err := env.RunCanvas(ctx, baton.Chord(baton.Group(square.S(1, nil), square.S(2, nil), square.S(3, nil)), sum.Sig(nil)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.State, string(rec.Result))
	// Output: SUCCESS 14
}
