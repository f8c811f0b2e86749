// Package asynqx holds what depends on asynq's private Redis layout
// (asynq v0.26.0, AsynqVersion), pinned by tests that fail, saying what to
// re-check, when an asynq upgrade changes it.
//
// # Message codec
//
// Encode and Decode read and write asynq's stored TaskMessage (the hash
// field "msg") with protowire: Encode gives the bytes of protobuf's
// deterministic marshalling of asynq's own message, Decode accepts exactly
// what protobuf's unmarshalling accepts (FuzzDecode checks both against
// asynq's generated type, which codec_test.go also pins field by field). A
// message written here is read back identically by asynq's Inspector and
// run by an asynq.Server; one written by asynq.Client decodes here.
package asynqx
