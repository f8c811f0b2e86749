package tasks

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func offlineFixture(t testing.TB) AnalyzeArgs {
	// Raw JSON, not a Go map, so the keys keep their document order.
	repo := json.RawMessage(`{"url":"https://api.github.com/repos/batonhq/baton","status":200,` +
		`"content_type":"application/json; charset=utf-8","bytes":187,"json":{"id":1,"name":"baton",` +
		`"full_name":"batonhq/baton","description":"Distributed task queue for Go on Redis",` +
		`"topics":["queue","redis","golang"],"owner":{"login":"batonhq"},"archived":false}}`)
	list := analyzeSrc(t, "https://api.example.com/papers", "application/json", []any{
		map[string]any{"title": "Redis streams for task queues", "year": 2021},
		map[string]any{"title": "Retry policies with jitter", "year": 2022},
		map[string]any{"title": "Exactly-once chords in queue systems", "year": 2023},
		map[string]any{"title": "A fourth paper not shown", "year": 2024},
	})
	html := analyzeSrc(t, "https://blog.example.com/post", "text/html",
		`<!doctype html><html><head><title>Queues in Go</title><style>body{color:red}</style>
<script>var queue = "ignored";</script></head><body><h1>Queues</h1><p>Redis queues and Redis workers: a queue per worker.</p></body></html>`)
	md := analyzeSrc(t, "https://example.com/README.md", "text/markdown",
		"# Baton\n\nBaton runs tasks on Redis. Workers retry tasks.\n")
	bare := json.RawMessage(`{"anything": "goes", "count": 3}`)
	return AnalyzeArgs{
		Sources: []json.RawMessage{repo, list, html, md, bare},
		Failed:  []SourceError{{URL: "https://down.example.com/x", Error: "HTTP 503 after 4 attempts"}},
	}
}

func TestOfflineAnalyzeContent(t *testing.T) {
	t.Parallel()
	res := analyzeOffline(offlineFixture(t))
	require.True(t, res.Offline)
	require.Equal(t, OfflineModel, res.Model)
	require.False(t, res.Cached)
	require.Positive(t, res.InputChars)
	text := res.Text
	for _, want := range []string{
		"# Offline analysis",
		"No LLM endpoint is configured",
		"5 sources analyzed, 1 failed;",
		// JSON object: keys in document order, notable fields, arrays.
		"### 1. https://api.github.com/repos/batonhq/baton",
		"Content-Type application/json; charset=utf-8, HTTP 200",
		"JSON object with 7 keys: id, name, full_name, description, topics, owner, archived",
		`- name: "baton"`,
		`- full_name: "batonhq/baton"`,
		`- description: "Distributed task queue for Go on Redis"`,
		"- topics: array of 3 strings",
		// JSON array of objects.
		"- JSON array of 4 objects",
		"- Keys of the first element: title, year",
		`  - title: "Redis streams for task queues"`,
		`  - title: "Exactly-once chords in queue systems"`,
		// HTML: title, markup and scripts dropped.
		`- Title: "Queues in Go"`,
		// Markdown.
		`- Title: "Baton"`,
		// A value that is not a fetch result.
		"### 5. (no URL)",
		"JSON object with 2 keys: anything, count",
		// Failures.
		"## Failed sources (1)",
		"- https://down.example.com/x: HTTP 503 after 4 attempts",
		"## Most frequent terms",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "A fourth paper not shown", "examples are capped at 3")
	require.NotContains(t, text, "ignored", "script bodies are not content")
	require.NotContains(t, text, "color")

	// Terms: stop words gone, counts deterministic, highest first.
	_, terms, ok := strings.Cut(text, "## Most frequent terms")
	require.True(t, ok)
	terms, _, ok = strings.Cut(terms, "## Sources")
	require.True(t, ok)
	require.Contains(t, terms, "redis (")
	require.Contains(t, terms, "queue (")
	for _, stop := range []string{"the (", "for (", "and (", "https ("} {
		require.NotContains(t, terms, stop)
	}
	require.Less(t, strings.Index(terms, "redis ("), strings.Index(terms, "baton ("), "redis is the most frequent")
}

func TestOfflineAnalyzeExactOutput(t *testing.T) {
	t.Parallel()
	args := AnalyzeArgs{
		Sources: []json.RawMessage{json.RawMessage(`{"url":"https://a.example/x.json","status":200,"content_type":"application/json","bytes":44,"json":{"title":"Alpha beta","items":[1,2,3]}}`)},
		Failed:  []SourceError{{URL: "https://b.example", Error: "timeout"}},
	}
	want := `# Offline analysis

No LLM endpoint is configured (set an API key or base URL), so this is an extractive summary of the data, not a model's analysis.

1 source analyzed, 1 failed; 44 bytes of content in total.

## Most frequent terms

alpha (1), beta (1)

## Sources

### 1. https://a.example/x.json
- Content-Type application/json, HTTP 200, 44 bytes
- JSON object with 2 keys: title, items
- title: "Alpha beta"
- items: array of 3 numbers
- Frequent terms: alpha (1), beta (1)

## Failed sources (1)

- https://b.example: timeout
`
	require.Equal(t, want, analyzeOffline(args).Text)
}

func TestOfflineAnalyzeDeterministic(t *testing.T) {
	t.Parallel()
	// Many terms with equal counts: ties must be broken the same way every
	// time, whatever order Go's maps iterate in.
	var words []string
	for _, w := range strings.Fields("zeta alpha omega delta gamma kappa lambda sigma theta iota") {
		words = append(words, w, w)
	}
	args := offlineFixture(t)
	args.Sources = append(args.Sources, analyzeSrc(t, "https://example.com/ties", "text/plain", strings.Join(words, " ")))
	first := analyzeOffline(args)
	for range 50 {
		require.Equal(t, first, analyzeOffline(args))
	}
	require.Contains(t, first.Text, "alpha (2), delta (2), gamma (2), iota (2), kappa (2), lambda (2), omega (2), sigma (2)")
}

func TestOfflineAnalyzeOddInput(t *testing.T) {
	t.Parallel()
	args := AnalyzeArgs{Sources: []json.RawMessage{
		json.RawMessage("not json \xff\xfe at all"),
		json.RawMessage(`null`),
		json.RawMessage(`"just a string"`),
		json.RawMessage(`[]`),
		json.RawMessage(`{"url":"https://x.example","json":null,"text":null}`),
		json.RawMessage(`{"url":"https://y.example\nInjected: header","text":"ok"}`),
		json.RawMessage(`[1,"two",{"three":3}]`),
	}}
	res := analyzeOffline(args)
	require.True(t, utf8.ValidString(res.Text))
	require.Contains(t, res.Text, "7 sources analyzed")
	require.Contains(t, res.Text, "JSON string: \"just a string\"")
	require.Contains(t, res.Text, "empty array")
	require.Contains(t, res.Text, "array of 3 values (mixed types)")
	require.Contains(t, res.Text, "### 6. https://y.example Injected: header", "a URL cannot break the layout")
	require.Equal(t, res, analyzeOffline(args))
}

// The fetch task's result is the shape parseSource reads.
func TestParseSourceReadsFetchResult(t *testing.T) {
	t.Parallel()
	for _, fr := range []FetchResult{
		{URL: "https://a.example/x", Status: 200, ContentType: "application/json", Bytes: 9, JSON: json.RawMessage(`{"a": 1}`)},
		{URL: "https://a.example/y", Status: 203, ContentType: "text/plain", Bytes: 5, Text: "hello"},
		{URL: "https://a.example/empty", Status: 204},
	} {
		raw, err := json.Marshal(fr)
		require.NoError(t, err)
		s := parseSource(raw)
		require.Equal(t, fr.URL, s.URL)
		require.Equal(t, fr.Status, s.Status)
		require.Equal(t, fr.ContentType, s.ContentType)
		require.Equal(t, int64(fr.Bytes), s.Size)
		require.Equal(t, fr.Text, s.Text)
		if fr.JSON != nil {
			require.JSONEq(t, string(fr.JSON), string(s.JSON))
		} else {
			require.Nil(t, s.JSON)
		}
	}
}

func FuzzOfflineAnalyze(f *testing.F) {
	f.Add([]byte(`{"url":"https://a.example","content_type":"application/json","json":{"title":"x","a":[1,2]}}`), "prompt")
	f.Add([]byte(`[{"name":"n"},{"name":"m"}]`), "")
	f.Add([]byte("<html><title>t</title><script>x"), "")
	f.Add([]byte("\xff\xfe\x00 plain <!-- text"), "p")
	f.Add([]byte(`{"url":1,"json":"s"}`), "")
	f.Fuzz(func(t *testing.T, data []byte, prompt string) {
		wrapped, _ := json.Marshal(map[string]any{"url": string(data), "text": string(data), "content_type": "text/html"})
		sources := []json.RawMessage{data, wrapped}
		if json.Valid(data) {
			asJSON, _ := json.Marshal(map[string]any{"url": "https://f.example", "json": json.RawMessage(data)})
			sources = append(sources, asJSON)
		}
		args := AnalyzeArgs{Sources: sources, Prompt: prompt, Failed: []SourceError{{URL: string(data), Error: prompt}}}
		a := analyzeOffline(args)
		b := analyzeOffline(args)
		if a != b {
			t.Fatalf("not deterministic:\n%s\n---\n%s", a.Text, b.Text)
		}
		if !utf8.ValidString(a.Text) {
			t.Fatalf("invalid UTF-8 in output")
		}
		if out, _ := truncateChars(renderSources(args), 64); !utf8.ValidString(out) {
			t.Fatalf("truncation broke UTF-8")
		}
	})
}
