package asynqx

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/batonhq/baton/internal/redistest"
)

// asynqMessageType is asynq's own generated asynq.TaskMessage, which its
// internal proto package registers with protobuf when asynq is linked in:
// the reference the codec is checked against.
func asynqMessageType(t testing.TB) protoreflect.MessageType {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName("asynq.TaskMessage")
	require.NoError(t, err, "asynq no longer registers the protobuf message asynq.TaskMessage: re-check how asynq %s+ stores task messages (internal/base EncodeMessage) and update codec.go", AsynqVersion)
	return mt
}

// TestCodecFieldsPinnedToAsynq fails when asynq's TaskMessage gains, loses
// or changes a field: the codec would then drop or misread it.
func TestCodecFieldsPinnedToAsynq(t *testing.T) {
	md := asynqMessageType(t).Descriptor()
	want := map[string]struct {
		num  protoreflect.FieldNumber
		kind protoreflect.Kind
	}{
		"type": {1, protoreflect.StringKind}, "payload": {2, protoreflect.BytesKind}, "id": {3, protoreflect.StringKind},
		"queue": {4, protoreflect.StringKind}, "retry": {5, protoreflect.Int32Kind}, "retried": {6, protoreflect.Int32Kind},
		"error_msg": {7, protoreflect.StringKind}, "timeout": {8, protoreflect.Int64Kind}, "deadline": {9, protoreflect.Int64Kind},
		"unique_key": {10, protoreflect.StringKind}, "last_failed_at": {11, protoreflect.Int64Kind},
		"retention": {12, protoreflect.Int64Kind}, "completed_at": {13, protoreflect.Int64Kind},
		"group_key": {14, protoreflect.StringKind}, "headers": {15, protoreflect.MessageKind},
	}
	const fix = "asynq's TaskMessage changed (asynq upgraded from %s?): update codec.go's fields, Encode and Decode, then this table"
	require.Equal(t, protoreflect.Proto3, md.Syntax(), fix, AsynqVersion)
	require.Equal(t, len(want), md.Fields().Len(), fix, AsynqVersion)
	for i := range md.Fields().Len() {
		f := md.Fields().Get(i)
		w, ok := want[string(f.Name())]
		require.True(t, ok, "new field %s: "+fix, f.Name(), AsynqVersion)
		require.Equal(t, w.num, f.Number(), "field %s: "+fix, f.Name(), AsynqVersion)
		require.Equal(t, w.kind, f.Kind(), "field %s: "+fix, f.Name(), AsynqVersion)
		require.Equal(t, f.Name() == "headers", f.IsMap(), "field %s: "+fix, f.Name(), AsynqVersion)
		require.False(t, f.IsList(), "field %s: "+fix, f.Name(), AsynqVersion)
		if f.IsMap() {
			require.Equal(t, protoreflect.StringKind, f.MapKey().Kind(), fix, AsynqVersion)
			require.Equal(t, protoreflect.StringKind, f.MapValue().Kind(), fix, AsynqVersion)
		}
	}
}

// toAsynq is m as asynq's generated message.
func toAsynq(t testing.TB, m *TaskMessage) proto.Message {
	t.Helper()
	msg := asynqMessageType(t).New()
	fs := msg.Descriptor().Fields()
	set := func(name string, v protoreflect.Value) { msg.Set(fs.ByName(protoreflect.Name(name)), v) }
	set("type", protoreflect.ValueOfString(m.Type))
	set("payload", protoreflect.ValueOfBytes(m.Payload))
	set("id", protoreflect.ValueOfString(m.ID))
	set("queue", protoreflect.ValueOfString(m.Queue))
	set("retry", protoreflect.ValueOfInt32(m.Retry))
	set("retried", protoreflect.ValueOfInt32(m.Retried))
	set("error_msg", protoreflect.ValueOfString(m.ErrorMsg))
	set("last_failed_at", protoreflect.ValueOfInt64(m.LastFailedAt))
	set("timeout", protoreflect.ValueOfInt64(m.Timeout))
	set("deadline", protoreflect.ValueOfInt64(m.Deadline))
	set("unique_key", protoreflect.ValueOfString(m.UniqueKey))
	set("group_key", protoreflect.ValueOfString(m.GroupKey))
	set("retention", protoreflect.ValueOfInt64(m.Retention))
	set("completed_at", protoreflect.ValueOfInt64(m.CompletedAt))
	hm := msg.Mutable(fs.ByName("headers")).Map()
	for k, v := range m.Headers {
		hm.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfString(v))
	}
	return msg.Interface()
}

// fromAsynq is asynq's generated message as a TaskMessage, normalised as
// normal() does.
func fromAsynq(pm proto.Message) *TaskMessage {
	msg := pm.ProtoReflect()
	fs := msg.Descriptor().Fields()
	get := func(name string) protoreflect.Value { return msg.Get(fs.ByName(protoreflect.Name(name))) }
	m := &TaskMessage{
		Type: get("type").String(), Payload: get("payload").Bytes(), ID: get("id").String(), Queue: get("queue").String(),
		Retry: int32(get("retry").Int()), Retried: int32(get("retried").Int()), ErrorMsg: get("error_msg").String(),
		LastFailedAt: get("last_failed_at").Int(), Timeout: get("timeout").Int(), Deadline: get("deadline").Int(),
		UniqueKey: get("unique_key").String(), GroupKey: get("group_key").String(), Retention: get("retention").Int(),
		CompletedAt: get("completed_at").Int(),
	}
	get("headers").Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[k.String()] = v.String()
		return true
	})
	return normal(m)
}

// normal makes equal messages compare equal: an empty payload or header
// map is nil.
func normal(m *TaskMessage) *TaskMessage {
	c := *m
	if len(c.Payload) == 0 {
		c.Payload = nil
	}
	if len(c.Headers) == 0 {
		c.Headers = nil
	}
	return &c
}

func sampleMessages() []*TaskMessage {
	return []*TaskMessage{
		{},
		{Type: "noop", ID: "a", Queue: "default", Retry: 25, Timeout: 1800},
		{
			Type: "bench_fetch", Payload: []byte(`{"x":1}` + "\x00\xff"), Headers: map[string]string{"b": "2", "a": "1", "": "", "é": "ü"},
			ID: "wf-1.step-2", Queue: "llm", Retry: math.MaxInt32, Retried: 3, ErrorMsg: "boom: ✗", LastFailedAt: 1_700_000_000,
			Timeout: 86400, Deadline: 1_800_000_000, UniqueKey: "asynq:{llm}:unique:x", GroupKey: "g", Retention: 3600, CompletedAt: 1_700_000_100,
		},
		{Type: "neg", Retry: -1, Retried: math.MinInt32, Timeout: -5, Deadline: math.MinInt64, Retention: math.MaxInt64},
		{Type: "big", Payload: make([]byte, 1<<20), ID: "big", Queue: "q"},
	}
}

// TestEncodeIsAsynqEncoding: Encode gives the bytes protobuf's
// deterministic marshalling of asynq's own message gives.
func TestEncodeIsAsynqEncoding(t *testing.T) {
	for i, m := range sampleMessages() {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(toAsynq(t, m))
		require.NoError(t, err)
		got, err := Encode(m)
		require.NoError(t, err)
		require.Equal(t, want, got, "message %d", i)
	}
}

// TestDecodeReadsAsynqEncoding: Decode reads protobuf's (map order not
// deterministic) marshalling of asynq's message back field for field.
func TestDecodeReadsAsynqEncoding(t *testing.T) {
	for i, m := range sampleMessages() {
		b, err := proto.Marshal(toAsynq(t, m))
		require.NoError(t, err)
		got, err := Decode(b)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, normal(m), normal(got), "message %d", i)
	}
}

func TestDecodeCopies(t *testing.T) {
	b, err := Encode(&TaskMessage{Type: "t", Payload: []byte("payload")})
	require.NoError(t, err)
	m, err := Decode(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = 0
	}
	require.Equal(t, "payload", string(m.Payload))
}

func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	for _, m := range []*TaskMessage{
		{Type: "bad\xff"},
		{Type: "t", Queue: "\xc3"},
		{Type: "t", Headers: map[string]string{"k": "\xff"}},
	} {
		_, err := Encode(m)
		require.ErrorContains(t, err, "not valid UTF-8")
		_, perr := proto.Marshal(toAsynq(t, m))
		require.Error(t, perr, "protobuf accepts it: the codec should too")
	}
	_, err := Encode(nil)
	require.Error(t, err)
}

// FuzzDecode: Decode accepts exactly what protobuf's unmarshalling of
// asynq's message accepts, reads the same fields, and Encode of what it
// read is protobuf's deterministic encoding.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages()[:4] {
		b, err := Encode(m)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0x7a, 0x04, 0x0a, 0x01, 'k', 0x12})              // truncated header entry
	f.Add([]byte{0x0d, 1, 2, 3, 4})                               // type with a fixed32 wire type
	f.Add([]byte{0x7a, 0x02, 0x10, 0x01})                         // header entry with a varint key
	f.Add([]byte{0x0b, 0x0c})                                     // empty group
	f.Add([]byte{0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // retry over 32 bits
	mt := asynqMessageType(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		ref := mt.New().Interface()
		rerr := proto.Unmarshal(data, ref)
		require.Equal(t, rerr == nil, err == nil, "protobuf says %v, Decode says %v", rerr, err)
		if err != nil {
			return
		}
		require.Equal(t, fromAsynq(ref), normal(got))
		ref.ProtoReflect().SetUnknown(nil) // asynq keeps known fields only
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ref)
		require.NoError(t, err)
		enc, err := Encode(got)
		require.NoError(t, err)
		require.Equal(t, want, enc)
	})
}

// TestDecodeReadsAsynqClientMessages: what asynq.Client stores decodes
// to what it was given.
func TestDecodeReadsAsynqClientMessages(t *testing.T) {
	rdb := redistest.MustStart(t, redistest.Options{}).Client(t, 0)
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(rdb)
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		task *asynq.Task
		opts []asynq.Option
		want TaskMessage
	}{
		{asynq.NewTask("plain", nil), []asynq.Option{asynq.TaskID("p1")},
			TaskMessage{Type: "plain", ID: "p1", Queue: "default", Retry: 25, Timeout: 1800}},
		{asynq.NewTaskWithHeaders("full", []byte("data"), map[string]string{"trace": "t-1"}),
			[]asynq.Option{asynq.TaskID("f1"), asynq.Queue("llm"), asynq.MaxRetry(3), asynq.Timeout(24 * time.Hour), asynq.Deadline(deadline), asynq.Retention(time.Minute), asynq.Unique(time.Minute)},
			TaskMessage{Type: "full", Payload: []byte("data"), Headers: map[string]string{"trace": "t-1"}, ID: "f1", Queue: "llm", Retry: 3,
				Timeout: 86400, Deadline: deadline.Unix(), Retention: 60, UniqueKey: "asynq:{llm}:unique:full:8d777f385d3dfec8815d20f7496026dc"}},
		{asynq.NewTask("grouped", []byte("x")), []asynq.Option{asynq.TaskID("g1"), asynq.Group("batch")},
			TaskMessage{Type: "grouped", Payload: []byte("x"), ID: "g1", Queue: "default", Retry: 25, Timeout: 1800, GroupKey: "batch"}},
	}
	for _, tc := range cases {
		info, err := c.EnqueueContext(ctx, tc.task, tc.opts...)
		require.NoError(t, err)
		raw, err := rdb.HGet(ctx, taskKey(info.Queue, info.ID), "msg").Bytes()
		require.NoError(t, err)
		got, err := Decode(raw)
		require.NoError(t, err)
		require.Equal(t, normal(&tc.want), normal(got))
		enc, err := Encode(got)
		require.NoError(t, err)
		require.Equal(t, raw, enc, "re-encoding %s changes its bytes", info.ID)
	}
}
