package baton

import (
	"context"
	"encoding/json"
	"fmt"
)

// Handle refers to an enqueued task. Its id is known before the task runs,
// so a caller can wait on it at once.
type Handle struct {
	ID    string
	Kind  string
	Queue string
	c     *Client
}

// HandleFor returns a handle on a task id enqueued elsewhere.
func (c *Client) HandleFor(id string) *Handle { return &Handle{ID: id, c: c} }

// Wait blocks until the task ends and returns its record; see Client.Wait.
func (h *Handle) Wait(ctx context.Context) (*Record, error) {
	r, err := h.c.be.WaitKnown(ctx, h.ID)
	return h.c.waitResult(h.ID, r, err)
}

// Get waits for the task and decodes its result into out (a pointer), or
// returns the task's error.
func (h *Handle) Get(ctx context.Context, out any) error {
	r, err := h.Wait(ctx)
	if err != nil {
		return err
	}
	if out == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("baton: decode result of %s (%s) into %T: %w", h.ID, r.Kind, out, err)
	}
	return nil
}

// Record returns the task's current record without waiting.
func (h *Handle) Record(ctx context.Context) (*Record, error) { return h.c.Get(ctx, h.ID) }

// TypedHandle is a Handle whose result decodes into R.
type TypedHandle[R any] struct {
	*Handle
}

// Get waits for the task and returns its typed result or its error.
func (h *TypedHandle[R]) Get(ctx context.Context) (R, error) {
	var out R
	err := h.Handle.Get(ctx, &out)
	return out, err
}
