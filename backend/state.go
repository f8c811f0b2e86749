package backend

// State is a task's lifecycle state, with Celery's names.
type State string

// The states a task moves through. SUCCESS, FAILURE and REVOKED are terminal:
// once recorded they are never overwritten.
const (
	Pending State = "PENDING"
	Started State = "STARTED"
	Retry   State = "RETRY"
	Success State = "SUCCESS"
	Failure State = "FAILURE"
	Revoked State = "REVOKED"
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool { return s == Success || s == Failure || s == Revoked }

// Valid reports whether s is one of the six states, or WAITING (a parked
// durable run, see durable.go).
func (s State) Valid() bool {
	switch s {
	case Pending, Started, Retry, Success, Failure, Revoked, Waiting:
		return true
	}
	return false
}
