package defaults_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/internal/defaults"
)

func TestCheckQueue(t *testing.T) {
	for _, ok := range []string{"default", "llm", "a:b", "q.1", "fetch-eu_2", "файлы"} {
		require.NoError(t, defaults.CheckQueue(ok), ok)
	}
	for _, bad := range []string{"my queue", "a\tb", "a\nb", "a\x00b", "a,b", "a=b", "q{1}", "q}", "\u00a0"} {
		err := defaults.CheckQueue(bad)
		require.Error(t, err, "%q", bad)
		require.ErrorContains(t, err, "queue name "+strconv.Quote(bad)+" contains a space, control character, comma, '=' or brace")
		require.ErrorContains(t, err, defaults.QueueRule)
	}
	require.EqualError(t, defaults.CheckQueue(""), "queue name is empty: use "+defaults.QueueRule)
}

func TestCheckQueues(t *testing.T) {
	require.NoError(t, defaults.CheckQueues(defaults.Queues()))
	require.NoError(t, defaults.CheckQueues(nil), "no queues is the caller's case: a worker takes the defaults, config refuses")
	require.EqualError(t, defaults.CheckQueues(map[string]int{"a": 1, "b": 0}), `queue "b" has weight 0: weights must be ≥ 1`)
	require.ErrorContains(t, defaults.CheckQueues(map[string]int{"ok": 1, "a b": 1}), `queue name "a b"`)
}

// TestQueues: the default queues hold both queues of the research pipeline
// (fetch on default, analyze on llm), and each call is a new map.
func TestQueues(t *testing.T) {
	q := defaults.Queues()
	require.Equal(t, map[string]int{"default": 6, "llm": 3, "low": 1}, q)
	require.Contains(t, q, defaults.Queue)
	require.Contains(t, q, defaults.LLMQueue)
	q["default"] = 100
	require.Equal(t, 6, defaults.Queues()["default"], "a caller changing its map changes nobody else's")
}
