package asynqx

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// TaskMessage is what asynq stores in the "msg" field of a task's hash: its
// protobuf message asynq.TaskMessage (asynq's internal/proto), field for
// field. Encode and Decode read and write it with protowire, since asynq's
// proto package is internal.
//
// asynq.Client fills a new message as follows, and a message built here
// should too: ID a fresh unique id, Queue "default" unless chosen, Retry 25
// unless chosen, Timeout 1800 (seconds) when neither Timeout nor Deadline is
// chosen, Deadline 0 when not chosen, the rest zero.
type TaskMessage struct {
	Type    string            // 1
	Payload []byte            // 2
	Headers map[string]string // 15
	ID      string            // 3
	Queue   string            // 4
	Retry   int32             // 5: how many retries are allowed
	Retried int32             // 6: how many retries ran so far
	// ErrorMsg is the last failure's error text (7).
	ErrorMsg string
	// LastFailedAt is the last failure's time, Unix seconds (11).
	LastFailedAt int64
	// Timeout is the per-attempt time limit in seconds; 0 for none (8).
	Timeout int64
	// Deadline is the absolute time limit, Unix seconds; 0 for none (9).
	Deadline int64
	// UniqueKey is the uniqueness lock the task holds, if any (10).
	UniqueKey string
	// GroupKey is the aggregation group, if any (14).
	GroupKey string
	// Retention is how long the task is kept once completed, in seconds
	// (12); 0 deletes it when done.
	Retention int64
	// CompletedAt is when the task completed, Unix seconds (13).
	CompletedAt int64
}

// The field numbers of asynq.TaskMessage.
const (
	fType         protowire.Number = 1
	fPayload      protowire.Number = 2
	fID           protowire.Number = 3
	fQueue        protowire.Number = 4
	fRetry        protowire.Number = 5
	fRetried      protowire.Number = 6
	fErrorMsg     protowire.Number = 7
	fTimeout      protowire.Number = 8
	fDeadline     protowire.Number = 9
	fUniqueKey    protowire.Number = 10
	fLastFailedAt protowire.Number = 11
	fRetention    protowire.Number = 12
	fCompletedAt  protowire.Number = 13
	fGroupKey     protowire.Number = 14
	fHeaders      protowire.Number = 15

	fMapKey   protowire.Number = 1
	fMapValue protowire.Number = 2
)

// Encode returns m in asynq's wire format: the bytes protobuf's own
// deterministic marshalling of asynq.TaskMessage gives (fields in number
// order, zero values left out, headers sorted by key). Strings must be
// valid UTF-8, as proto3 requires of them.
func Encode(m *TaskMessage) ([]byte, error) {
	if m == nil {
		return nil, errors.New("asynqx: encode: nil task message")
	}
	for _, f := range []struct {
		name, v string
	}{{"Type", m.Type}, {"ID", m.ID}, {"Queue", m.Queue}, {"ErrorMsg", m.ErrorMsg}, {"UniqueKey", m.UniqueKey}, {"GroupKey", m.GroupKey}} {
		if !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("asynqx: encode task message %q: %s is not valid UTF-8, which asynq's protobuf message cannot carry", m.ID, f.name)
		}
	}
	for k, v := range m.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("asynqx: encode task message %q: header %q is not valid UTF-8, which asynq's protobuf message cannot carry", m.ID, k)
		}
	}
	b := make([]byte, 0, 64+len(m.Payload)+len(m.Type)+len(m.ID)+len(m.Queue)+len(m.ErrorMsg))
	b = appendString(b, fType, m.Type)
	b = appendBytes(b, fPayload, m.Payload)
	b = appendString(b, fID, m.ID)
	b = appendString(b, fQueue, m.Queue)
	b = appendVarint(b, fRetry, uint64(int64(m.Retry))) // int32 is sign-extended
	b = appendVarint(b, fRetried, uint64(int64(m.Retried)))
	b = appendString(b, fErrorMsg, m.ErrorMsg)
	b = appendVarint(b, fTimeout, uint64(m.Timeout))
	b = appendVarint(b, fDeadline, uint64(m.Deadline))
	b = appendString(b, fUniqueKey, m.UniqueKey)
	b = appendVarint(b, fLastFailedAt, uint64(m.LastFailedAt))
	b = appendVarint(b, fRetention, uint64(m.Retention))
	b = appendVarint(b, fCompletedAt, uint64(m.CompletedAt))
	b = appendString(b, fGroupKey, m.GroupKey)
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		// A map entry is a nested message {1: key, 2: value}; protobuf
		// writes both fields even when empty.
		v := m.Headers[k]
		n := protowire.SizeTag(fMapKey) + protowire.SizeBytes(len(k)) + protowire.SizeTag(fMapValue) + protowire.SizeBytes(len(v))
		b = protowire.AppendTag(b, fHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = protowire.AppendTag(b, fMapKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fMapValue, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b, nil
}

func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, n protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// Decode reads a message in asynq's wire format, as protobuf's
// unmarshalling of asynq.TaskMessage would: the last of repeated scalar
// fields wins, unknown fields and fields of an unexpected wire type are
// skipped, strings must be valid UTF-8. The result shares no memory with
// data.
func Decode(data []byte) (*TaskMessage, error) {
	m := &TaskMessage{}
	for len(data) > 0 {
		num, typ, n, err := consumeTag(data)
		if err != nil {
			return nil, err
		}
		data = data[n:]
		if n, err = m.decodeField(num, typ, data); err != nil {
			return nil, err
		}
		data = data[n:]
	}
	return m, nil
}

// consumeTag is protowire.ConsumeTag that also refuses field numbers over
// protobuf's maximum, as protobuf's unmarshalling does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, decodeError(protowire.ParseError(n))
	}
	if num > protowire.MaxValidNumber {
		return 0, 0, 0, decodeError(fmt.Errorf("field number %d is over protobuf's maximum", num))
	}
	return num, typ, n, nil
}

func decodeError(err error) error {
	return fmt.Errorf("asynqx: decode task message: %w (is it an asynq %s message?)", err, AsynqVersion)
}

// decodeField decodes one field's value at the start of data and returns
// its length.
func (m *TaskMessage) decodeField(num protowire.Number, typ protowire.Type, data []byte) (int, error) {
	switch {
	case typ == protowire.BytesType && isBytesField(num):
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return 0, decodeError(protowire.ParseError(n))
		}
		return n, m.setBytes(num, v)
	case typ == protowire.VarintType && isVarintField(num):
		v, n := protowire.ConsumeVarint(data)
		if n < 0 {
			return 0, decodeError(protowire.ParseError(n))
		}
		m.setVarint(num, v)
		return n, nil
	}
	n := protowire.ConsumeFieldValue(num, typ, data)
	if n < 0 {
		return 0, decodeError(protowire.ParseError(n))
	}
	return n, nil
}

func isBytesField(num protowire.Number) bool {
	switch num {
	case fType, fPayload, fID, fQueue, fErrorMsg, fUniqueKey, fGroupKey, fHeaders:
		return true
	}
	return false
}

func isVarintField(num protowire.Number) bool {
	switch num {
	case fRetry, fRetried, fTimeout, fDeadline, fLastFailedAt, fRetention, fCompletedAt:
		return true
	}
	return false
}

func (m *TaskMessage) setBytes(num protowire.Number, v []byte) error {
	if num == fPayload {
		m.Payload = append([]byte{}, v...)
		return nil
	}
	if num == fHeaders {
		return m.decodeHeader(v)
	}
	if !utf8.Valid(v) {
		return decodeError(fmt.Errorf("field %d is not valid UTF-8", num))
	}
	s := string(v)
	switch num {
	case fType:
		m.Type = s
	case fID:
		m.ID = s
	case fQueue:
		m.Queue = s
	case fErrorMsg:
		m.ErrorMsg = s
	case fUniqueKey:
		m.UniqueKey = s
	case fGroupKey:
		m.GroupKey = s
	}
	return nil
}

func (m *TaskMessage) setVarint(num protowire.Number, v uint64) {
	switch num {
	case fRetry:
		m.Retry = int32(v)
	case fRetried:
		m.Retried = int32(v)
	case fTimeout:
		m.Timeout = int64(v)
	case fDeadline:
		m.Deadline = int64(v)
	case fLastFailedAt:
		m.LastFailedAt = int64(v)
	case fRetention:
		m.Retention = int64(v)
	case fCompletedAt:
		m.CompletedAt = int64(v)
	}
}

// decodeHeader decodes one map entry; a missing key or value is "", a
// repeated key's last value wins.
func (m *TaskMessage) decodeHeader(entry []byte) error {
	var k, v string
	for len(entry) > 0 {
		num, typ, n, err := consumeTag(entry)
		if err != nil {
			return err
		}
		entry = entry[n:]
		if typ == protowire.BytesType && (num == fMapKey || num == fMapValue) {
			b, n := protowire.ConsumeBytes(entry)
			if n < 0 {
				return decodeError(protowire.ParseError(n))
			}
			if !utf8.Valid(b) {
				return decodeError(errors.New("a header is not valid UTF-8"))
			}
			if num == fMapKey {
				k = string(b)
			} else {
				v = string(b)
			}
			entry = entry[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, entry)
		if n < 0 {
			return decodeError(protowire.ParseError(n))
		}
		entry = entry[n:]
	}
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	m.Headers[k] = v
	return nil
}
