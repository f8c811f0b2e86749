package baton

import "encoding/json"

// TaskMessage is what a queued task's message says about it: the fields
// tools need to show or check a task that asynq holds in a queue, read with
// asynq's Inspector (asynq.TaskInfo.Payload) before any record of it exists.
type TaskMessage struct {
	ID   string
	Kind string
	// Args are the arguments the handler will get, as JSON: a workflow
	// step's carry the result of the step before it.
	Args json.RawMessage
	// WorkflowID and ParentID place a workflow step (see TaskInfo).
	WorkflowID string
	ParentID   string
}

// DecodeTaskMessage reads the payload of a task baton enqueued. Its error
// says why a payload is not a baton message (another program's task, or
// another version of baton's).
func DecodeTaskMessage(payload []byte) (*TaskMessage, error) {
	m, err := decodeMessage(payload)
	if err != nil {
		return nil, err
	}
	return &TaskMessage{ID: m.ID, Kind: m.Kind, Args: m.Args, WorkflowID: m.Workflow, ParentID: m.Parent}, nil
}
