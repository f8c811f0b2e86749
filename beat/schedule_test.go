package beat_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton/beat"
)

func TestParse(t *testing.T) {
	s, err := beat.Parse([]byte(`
timezone: Europe/Paris
entries:
  - name: heartbeat
    every: 30s
    task: echo
    args: {msg: tick}
    options: {queue: low, expires_in: 30s}
  - name: nightly_research
    cron: "0 3 * * *"
    timezone: America/New_York
    canvas:
      chord:
        header: [{task: fetch, args: {url: "https://example.com"}}]
        body: {task: analyze}
`))
	require.NoError(t, err)
	require.Len(t, s.Entries, 2)
	hb, nightly := s.Entries[0], s.Entries[1]
	require.Equal(t, 30*time.Second, hb.Every)
	require.JSONEq(t, `{"msg":"tick"}`, string(hb.Args))
	require.Equal(t, "low", hb.Options.Queue)
	require.Equal(t, 30*time.Second, hb.Options.ExpiresIn)
	require.Equal(t, "Europe/Paris", hb.Timezone)
	require.Equal(t, "America/New_York", nightly.Timezone)
	require.JSONEq(t, `{"chord":{"header":[{"task":"fetch","args":{"url":"https://example.com"}}],"body":{"task":"analyze"}}}`, string(nightly.Canvas))

	// Cron in the entry's time zone: 03:00 New York is 08:00 UTC in winter.
	from := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 1, 11, 8, 0, 0, 0, time.UTC), nightly.Next(from).UTC())
	// Intervals are aligned to the epoch, whoever computes them.
	require.Equal(t, time.Date(2026, 1, 10, 12, 0, 30, 0, time.UTC), hb.Next(from).UTC())
	require.Equal(t, time.Date(2026, 1, 10, 12, 0, 30, 0, time.UTC), hb.Next(from.Add(29*time.Second+999*time.Millisecond)).UTC())
	require.Equal(t, "beat-heartbeat-1768046430", hb.RunID(hb.Next(from)))

	require.NoError(t, s.CheckKinds([]string{"echo", "fetch", "analyze"}))
	require.EqualError(t, s.CheckKinds([]string{"echo", "fetch"}),
		`entries "nightly_research": canvas $.chord.body.task: unknown task kind "analyze" (known: echo, fetch)`)
	require.EqualError(t, s.CheckKinds([]string{"fetch", "analyze"}),
		`entries "heartbeat": task: unknown task kind "echo" (known: fetch, analyze)`)

	// YAML anchors work across entries.
	anchored, err := beat.Parse([]byte("entries:\n" +
		"  - {name: a, every: 1s, task: echo, options: &opts {queue: low}}\n" +
		"  - {name: b, every: 2s, task: echo, options: *opts}\n"))
	require.NoError(t, err)
	require.Equal(t, "low", anchored.Entries[1].Options.Queue)

	js, err := beat.Parse([]byte(`{"entries":[{"name":"j","every":"5s","task":"echo","args":[1,2]}]}`))
	require.NoError(t, err)
	require.JSONEq(t, `[1,2]`, string(js.Entries[0].Args))
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ doc, err string }{
		{`[]`, `expected a mapping with "entries"`},
		{`entries: []`, `entries: the list is empty`},
		{`{entries: [], tz: UTC}`, `unknown top-level field "tz"`},
		{`timezone: Mars/Olympus
entries: [{name: a, every: 1s, task: echo}]`, `timezone: unknown time zone "Mars/Olympus"`},
		{`entries: [{every: 1s, task: echo}]`, `entries[0]: name: missing`},
		{`entries: [{name: "a b", every: 1s, task: echo}]`, `entries[0] "a b": name: "a b": use 1 to 100 letters`},
		{`entries: [{name: a, task: echo}]`, `entries[0] "a": cron or every: missing`},
		{`entries: [{name: a, every: 1s, cron: "* * * * *", task: echo}]`, `entries[0] "a": cron and every: give one of them`},
		{`entries: [{name: a, cron: "61 * * * *", task: echo}]`, `entries[0] "a": cron: "61 * * * *": end of range (61) above maximum (59)`},
		{`entries: [{name: a, cron: "@every 5s", task: echo}]`, `entries[0] "a": cron: "@every 5s": @every counts from when the process started`},
		{`entries: [{name: a, every: 500ms, task: echo}]`, `entries[0] "a": every: 500ms is under 1s`},
		{`entries: [{name: a, every: 1.5s, task: echo}]`, `every: 1.5s is not a whole number of seconds`},
		{`entries: [{name: a, every: soon, task: echo}]`, `entries[0] "a": every: "soon" is not a duration`},
		{`entries: [{name: a, every: 1s}]`, `entries[0] "a": task or canvas: missing`},
		{`entries: [{name: a, every: 1s, task: echo, canvas: {task: echo}}]`, `task and canvas: give one of them`},
		{`entries: [{name: a, every: 1s, canvas: {task: echo}, args: 1}]`, `entries[0] "a": args: not allowed with canvas`},
		{`entries: [{name: a, every: 1s, canvas: {chain: []}}]`, `entries[0] "a": canvas: $.chain`},
		{`entries: [{name: a, every: 1s, task: echo, options: {queu: x}}]`, `entries[0] "a": options: `},
		{`entries: [{name: a, every: 1s, task: echo, options: {id: x}}]`, `entries[0] "a": options.id: not allowed`},
		{`entries: [{name: a, every: 1s, task: echo, timezone: Nowhere}]`, `entries[0] "a": timezone: unknown time zone "Nowhere"`},
		{`entries: [{name: a, every: 1s, task: echo, crom: x}]`, `entries[0] "a": unknown field "crom"`},
		{`entries: [{name: a, every: 1s, task: echo}, {name: a, every: 2s, task: echo}]`, `entries[1] "a": name: already used by entries[0]`},
		{"entries:\n  - name: a\n   every: 1s", `not valid YAML or JSON`},
		{`{"entries":[{"name":"a","every":"1s","task":"echo"},{"name":"b","every":"1s","task":"echo","bogus":1}]}`,
			`entries[1] "b": unknown field "bogus" (known: name, cron, every, timezone, task, args, options, canvas)`},
		{`entries: [5]`, `entries[0]: line 1: cannot read !!int ` + "`5`" + ` as a mapping`},
		{`entries: [{name: a, every: 1s, task: [x]}]`, `entries[0] "a": line 1: cannot read !!seq as a string`},
		{`entries: 5`, `line 1: cannot read !!int ` + "`5`" + ` as a list`},
	} {
		_, err := beat.Parse([]byte(tc.doc))
		require.Error(t, err, tc.doc)
		require.Contains(t, err.Error(), tc.err, tc.doc)
	}
}
