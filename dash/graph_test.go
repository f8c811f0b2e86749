package dash

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/chain"
)

func sig(kind string) *chain.Signature {
	return &chain.Signature{Kind: kind, Args: json.RawMessage("1")}
}

func TestLayout(t *testing.T) {
	t.Run("chain left to right", func(t *testing.T) {
		p, err := chain.Compile("w", chain.NewChain(sig("a"), sig("b"), sig("c")))
		require.NoError(t, err)
		g := layout(p, nil, nil)
		require.Len(t, g.Boxes, 3)
		require.Less(t, g.Boxes[0].X, g.Boxes[1].X)
		require.Less(t, g.Boxes[1].X, g.Boxes[2].X)
		require.Equal(t, g.Boxes[0].Y, g.Boxes[2].Y)
		require.Len(t, g.Edges, 2)
		require.Equal(t, "PENDING", g.Boxes[0].Step.State)
	})
	t.Run("chord fans out and in", func(t *testing.T) {
		p, err := chain.Compile("w", chain.NewChord(chain.NewGroup(sig("f"), sig("f"), sig("f")), sig("analyze")))
		require.NoError(t, err)
		g := layout(p, nil, nil)
		require.Len(t, g.Boxes, 4)
		for _, b := range g.Boxes[:3] {
			require.Equal(t, g.Boxes[0].X, b.X, "header stacked in one column")
		}
		require.Less(t, g.Boxes[0].Y, g.Boxes[1].Y)
		require.Greater(t, g.Boxes[3].X, g.Boxes[0].X)
		require.Equal(t, g.Boxes[1].Y, g.Boxes[3].Y, "body level with the middle of the header")
		require.Len(t, g.Edges, 3)
		for _, e := range g.Edges {
			require.Equal(t, "w.4", e.To)
		}
	})
	t.Run("group into group meets at a join", func(t *testing.T) {
		p, err := chain.Compile("w", chain.NewChain(sig("a"), chain.NewGroup(sig("b"), sig("c")),
			chain.NewGroup(sig("d"), sig("e"), sig("f")), sig("g")))
		require.NoError(t, err)
		g := layout(p, nil, nil)
		require.Len(t, g.Boxes, 7)
		require.Len(t, g.Joins, 1)
		// a→b, a→c; b,c→join; join→d,e,f; d,e,f→g
		require.Len(t, g.Edges, 2+2+3+3)
		for _, b := range g.Boxes {
			require.LessOrEqual(t, b.X+boxW, g.Width)
			require.LessOrEqual(t, b.Y+boxH, g.Height)
			require.False(t, strings.Contains(b.Step.ID, " "))
		}
	})
}

func TestExcerpt(t *testing.T) {
	require.Equal(t, "short", excerpt([]byte("short"), 10))
	long := strings.Repeat("é", 2000) // 4000 bytes
	e := excerpt([]byte(long), 1025)
	require.True(t, strings.HasSuffix(e, "… (3.9 KiB in all)"), e)
	require.True(t, strings.HasPrefix(e, strings.Repeat("é", 512)))

	f := newFormatter(nil)
	big := `{"v":1,"id":"x","kind":"analyze","args":"` + strings.Repeat("a", 5000) + `"}`
	out := f.FormatPayload("analyze", []byte(big))
	require.Contains(t, out, `"kind": "analyze"`)
	require.Contains(t, out, "KiB in all")
	require.Less(t, len(out), 1500)
	require.Equal(t, "plain", f.FormatPayload("x", []byte("plain")))
}

func TestLayoutCallbacks(t *testing.T) {
	p, err := chain.Compile("w", chain.NewChain(sig("a").WithLink(sig("l")), chain.NewGroup(sig("b"), sig("c"))).WithOnError(sig("e")))
	require.NoError(t, err)
	g := layout(p, nil, []stepView{{ID: "w.1.link", Kind: "l", State: "SUCCESS"}})
	require.Len(t, g.Callbacks, 2)
	require.Len(t, g.CallbackEdges, 2)
	var lowest float64
	for _, b := range g.Boxes {
		lowest = math.Max(lowest, b.Y+boxH)
	}
	for _, cb := range g.Callbacks {
		require.Greater(t, cb.Y, lowest, "callbacks below the canvas")
		require.LessOrEqual(t, cb.X+boxW, g.Width)
		require.LessOrEqual(t, cb.Y+boxH, g.Height)
	}
	require.Equal(t, "on_error", g.Callbacks[0].Event, "the chain's (node 0) first")
	require.Equal(t, "PENDING", g.Callbacks[0].Step.State)
	require.Equal(t, "link", g.Callbacks[1].Event)
	require.Equal(t, "SUCCESS", g.Callbacks[1].Step.State)
	require.GreaterOrEqual(t, g.Callbacks[1].X, g.Callbacks[0].X+boxW, "callbacks do not overlap")
}
