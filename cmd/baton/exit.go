package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/batonhq/baton"
)

// Exit codes. This file is the only place errors become exit codes.
const (
	exitOK          = 0   // success; the task or workflow ended in SUCCESS
	exitFailure     = 1   // the task or workflow ended FAILURE or REVOKED, or any other error
	exitUsage       = 2   // bad flags, arguments, configuration or input document
	exitRedis       = 3   // Redis cannot be reached
	exitNotFound    = 4   // no such task or workflow id
	exitNotFinished = 5   // the task is still PENDING, STARTED or RETRY
	exitInterrupted = 130 // SIGINT/SIGTERM stopped a command that waits
)

// usageError is a mistake in the command line or its input: exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// redisError is Redis being unreachable: exit 3. Its message is one line
// with the address and never the password.
type redisError struct {
	addr string
	err  error
	hint string
}

func (e *redisError) Error() string {
	return fmt.Sprintf("cannot reach Redis at %s: %s (%s)", e.addr, firstLine(e.err.Error()), e.hint)
}
func (e *redisError) Unwrap() error { return e.err }

// resumeError is a submission cut short after its workflow id was chosen
// (some of it may be in Redis): its one line names the id and the command
// that resumes it. redis: the cause was Redis failing (exit 3), not an
// interrupt.
type resumeError struct {
	id, cmd string
	err     error
	redis   bool
}

func (e *resumeError) Error() string {
	return fmt.Sprintf("%s; %s", firstLine(strings.TrimPrefix(e.err.Error(), "baton: ")), e.hint())
}

func (e *resumeError) hint() string {
	return fmt.Sprintf("workflow %s may be partly submitted: resume it with: %s", e.id, e.cmd)
}

func (e *resumeError) Unwrap() error { return e.err }

// interruptedError is any error of a command whose context ended (SIGINT,
// SIGTERM): exit 130, whatever the error says (libraries word a cancelled
// call in many ways, some without wrapping context.Canceled).
type interruptedError struct{ err error }

func (e *interruptedError) Error() string { return e.err.Error() }
func (e *interruptedError) Unwrap() error { return e.err }

// exitError carries an exit code for an outcome already reported on stdout
// (a FAILURE record, a task not finished): nothing more is printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// stateExit is the exit code a task or workflow state stands for.
func stateExit(s baton.State) error {
	switch s {
	case baton.Success:
		return nil
	case baton.Failure, baton.Revoked:
		return &exitError{exitFailure}
	}
	return &exitError{exitNotFinished}
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var (
		ee  *exitError
		ue  *usageError
		re  *redisError
		ne  *net.OpError
		te  *baton.TaskError
		ie  *interruptedError
		rse *resumeError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ie):
		return exitInterrupted
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &rse) && rse.redis:
		// Submit and its wait only talk to Redis: a failure that is not
		// about the input is Redis failing, however asynq words it.
		return exitRedis
	case errors.As(err, &re), errors.As(err, &ne), errors.Is(err, os.ErrDeadlineExceeded):
		// os.ErrDeadlineExceeded: Redis gave no reply within
		// BATON_REDIS_TIMEOUT (config.NewRedisClient's budget).
		return exitRedis
	case errors.Is(err, baton.ErrNotFound):
		return exitNotFound
	case errors.As(err, &te):
		return exitFailure
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitFailure
}

// report prints err as one "baton: ..." line on w (a usage error gets a
// pointer to --help) and returns the exit code.
func report(w io.Writer, err error, cmdPath string) int {
	code := exitCode(err)
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return code
	}
	msg := strings.TrimPrefix(err.Error(), "baton: ")
	if code == exitInterrupted {
		msg = "interrupted"
		var rse *resumeError
		if errors.As(err, &rse) {
			msg += "; " + rse.hint()
		}
	}
	fmt.Fprintf(w, "baton: %s\n", msg)
	if code == exitUsage && cmdPath != "" {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmdPath)
	}
	return code
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
