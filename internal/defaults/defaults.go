// Package defaults holds baton's default settings and naming rules, each
// defined once. The root package, backend, config, tasks and cmd/baton take
// their defaults from here, so that a library user's NewWorker, a
// `baton worker` and the README's configuration table agree.
//
// The exported XxxDefault constants of those packages (baton.ConcurrencyDefault,
// config.ResultTTLDefault, tasks.FetchTimeoutDefault, ...) are these values
// under their public names. This package imports nothing of baton, so every
// package of the module may use it.
package defaults

import (
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode"
)

// Results and workers.
const (
	// ResultTTL is how long task records are kept after their last write.
	ResultTTL = 24 * time.Hour
	// MinResultTTL is the shortest ResultTTL accepted: results kept for
	// less would vanish before anyone reads them.
	MinResultTTL = time.Second
	// Concurrency is how many tasks a worker process runs at once.
	Concurrency = 10
	// ShutdownTimeout is how long running tasks get to finish when a worker
	// shuts down before they go back to their queue.
	ShutdownTimeout = 30 * time.Second
)

// Queue names.
const (
	// Queue is the queue a task runs on unless told otherwise; the fetch
	// task runs there.
	Queue = "default"
	// LLMQueue is the queue of model calls (the analyze task), so that a
	// worker can weigh them apart from the rest.
	LLMQueue = "llm"
	// LowQueue is for work that may wait.
	LowQueue = "low"
)

// Queues returns the queues a worker serves when none are given, with their
// weights: default=6, llm=3, low=1. Both queues of the research pipeline are
// among them, so a worker with the defaults runs fetch and analyze. Each
// call returns a new map.
func Queues() map[string]int {
	return map[string]int{Queue: 6, LLMQueue: 3, LowQueue: 1}
}

// Payload and canvas limits.
const (
	// MaxPayloadBytes is the largest encoded task message a client enqueues.
	MaxPayloadBytes = 1 << 20
	// WorkerMaxPayloadBytes caps the messages a worker enqueues (next steps
	// carry the previous step's result): Redis's own default bulk limit,
	// proto-max-bulk-len.
	WorkerMaxPayloadBytes = 512 << 20
	// MaxCanvasTasks is the most tasks one submitted canvas may hold.
	MaxCanvasTasks = 100_000
	// MaxCanvasBytes is the largest encoded plan of one submitted canvas.
	MaxCanvasBytes = 64 << 20
)

// The fetch task.
const (
	// FetchTimeout bounds one HTTP fetch.
	FetchTimeout = 30 * time.Second
	// FetchMaxBody is the largest body a fetch reads, in bytes.
	FetchMaxBody = 10 << 20
	// FetchUserAgent is the User-Agent of fetches.
	FetchUserAgent = "baton/0.1 (+https://github.com/batonhq/baton)"
	// FetchRetryDelay is the first backoff delay of a failed fetch that gave
	// no Retry-After.
	FetchRetryDelay = 60 * time.Second
	// FetchRetryAfterCap caps how long an upstream Retry-After can delay a
	// retried fetch.
	FetchRetryAfterCap = 10 * time.Minute
)

// The analyze task.
const (
	// LLMModel is the chat model asked for.
	LLMModel = "gpt-4o-mini"
	// LLMTimeout bounds one model call.
	LLMTimeout = 5 * time.Minute
	// SystemPrompt is the analyze task's system prompt.
	SystemPrompt = "Analyze the following data."
	// MaxInputChars caps the characters of collected data sent to the model.
	MaxInputChars = 60_000
	// LLMCacheTTL is how long model responses are cached, so that a re-run
	// does not pay twice.
	LLMCacheTTL = 168 * time.Hour
)

// QueueRule is the queue-name rule in words, for help texts and errors.
const QueueRule = "no spaces, control characters, commas, '=' or braces; e.g. letters, digits, '-', '_', '.' and ':'"

// CheckQueue checks a queue name: not empty, with no space or control
// character (a name must survive a command line), no ',' or '=' (the
// syntax of BATON_QUEUES) and no brace (asynq puts the name inside a Redis
// Cluster hash tag). The error quotes the name and states the rule.
func CheckQueue(name string) error {
	if name == "" {
		return fmt.Errorf("queue name is empty: use %s", QueueRule)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' || r == '=' || r == '{' || r == '}' {
			return fmt.Errorf("queue name %q contains a space, control character, comma, '=' or brace: use %s", name, QueueRule)
		}
	}
	return nil
}

// CheckQueues checks the queues a worker serves and their weights (each at
// least 1), in name order, and returns the first problem.
func CheckQueues(queues map[string]int) error {
	for _, name := range slices.Sorted(maps.Keys(queues)) {
		if err := CheckQueue(name); err != nil {
			return err
		}
		if w := queues[name]; w < 1 {
			return fmt.Errorf("queue %q has weight %d: weights must be ≥ 1", name, w)
		}
	}
	return nil
}
