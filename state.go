package baton

import "github.com/batonhq/baton/backend"

// State is a task's lifecycle state, with Celery's names.
type State = backend.State

// The states a task moves through.
const (
	Pending = backend.Pending // known, not started
	Started = backend.Started // a worker is running it
	Retry   = backend.Retry   // failed, another attempt is scheduled
	Success = backend.Success // finished with a result (terminal)
	Failure = backend.Failure // failed for good (terminal)
	Revoked = backend.Revoked // will not run: expired or cancelled (terminal)
	Waiting = backend.Waiting // a durable run parked until its children, a timer or an event
)
