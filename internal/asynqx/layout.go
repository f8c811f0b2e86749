package asynqx

// asynq v0.26.0's Redis layout, as its internal/base and internal/rdb
// packages write it.

// AsynqVersion is the asynq release whose private layout this package
// reproduces.
const AsynqVersion = "v0.26.0"

func queuePrefix(q string) string   { return "asynq:{" + q + "}:" }
func taskKeyPrefix(q string) string { return queuePrefix(q) + "t:" }
func taskKey(q, id string) string   { return taskKeyPrefix(q) + id }
