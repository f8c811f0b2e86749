// Package tasks holds baton's concrete tasks, the two steps of the reference
// research pipeline:
//
//   - fetch: an HTTP GET with a timeout and a body cap that returns the JSON or
//     text it found, retries what may succeed later (network errors, 5xx, 429
//     with Retry-After), fails at once on what never will (other 4xx), and
//     refuses link-local and cloud metadata addresses always, and private and
//     loopback ones unless FetchConfig.AllowPrivate is set.
//   - analyze: sends the collected data to a chat-completion model and returns
//     its text and token usage.
//
// Each task is plain Go logic with typed arguments and a typed result; it
// reports "retry later" and "give up" with [baton.RetryAfter] and
// [baton.Permanent], and an upstream's 429 with [baton.RateLimited], which
// pauses the task's fleet-wide rate limits. FetchConfig.PerHost limits
// fetches per host and LLMConfig.TokensPerMinute analyze's tokens per model
// (limits.go).
package tasks
