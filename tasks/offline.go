package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits that keep the offline summary readable whatever the input size.
const (
	offlineMaxKeys        = 20  // top-level keys listed per JSON source
	offlineMaxArrays      = 10  // array-valued keys described per JSON source
	offlineMaxExamples    = 3   // notable fields shown from an array's elements
	offlineMaxValueChars  = 160 // a quoted string field
	offlineTermsPerSource = 8
	offlineTermsOverall   = 15
	offlineMinTermLen     = 3
	offlineMaxTermLen     = 40
)

// notableFields are string fields worth quoting, in order of preference.
var notableFields = []string{"title", "name", "full_name", "headline", "summary", "description", "abstract"}

// analyzeOffline is the deterministic extractive analyzer used when no LLM
// endpoint is configured. The same args give the same text, byte for byte:
// nothing depends on map iteration order, time or randomness.
func analyzeOffline(args AnalyzeArgs) AnalyzeResult {
	var b strings.Builder
	b.WriteString("# Offline analysis\n\n")
	b.WriteString("No LLM endpoint is configured (set an API key or base URL), so this is an extractive summary of the data, not a model's analysis.\n\n")
	if args.Prompt != "" {
		fmt.Fprintf(&b, "Prompt (not used offline): %s\n\n", shortLine(args.Prompt, 200))
	}

	overall := map[string]int{}
	var total int64
	var sections strings.Builder
	for i, raw := range args.Sources {
		s := parseSource(raw)
		total += max(s.Size, 0)
		terms := map[string]int{}
		title := "(no URL)"
		if s.URL != "" {
			title = shortLine(s.URL, 300)
		}
		fmt.Fprintf(&sections, "\n### %d. %s\n", i+1, title)
		var meta []string
		if s.ContentType != "" {
			meta = append(meta, "Content-Type "+shortLine(s.ContentType, 100))
		}
		if s.Status != 0 {
			meta = append(meta, fmt.Sprintf("HTTP %d", s.Status))
		}
		meta = append(meta, fmt.Sprintf("%d bytes", s.Size))
		sections.WriteString("- " + strings.Join(meta, ", ") + "\n")
		if s.JSON != nil {
			describeJSON(&sections, s.JSON, terms)
		} else {
			describeText(&sections, s.Text, s.ContentType, terms)
		}
		if top := topTerms(terms, offlineTermsPerSource); len(top) > 0 {
			sections.WriteString("- Frequent terms: " + formatTerms(top) + "\n")
		}
		for t, n := range terms {
			overall[t] += n
		}
	}

	fmt.Fprintf(&b, "%s analyzed", countNoun(len(args.Sources), "source", "sources"))
	if len(args.Failed) > 0 {
		fmt.Fprintf(&b, ", %d failed", len(args.Failed))
	}
	fmt.Fprintf(&b, "; %d bytes of content in total.\n", total)
	if top := topTerms(overall, offlineTermsOverall); len(top) > 0 {
		b.WriteString("\n## Most frequent terms\n\n" + formatTerms(top) + "\n")
	}
	if len(args.Sources) > 0 {
		b.WriteString("\n## Sources\n")
		b.WriteString(sections.String())
	}
	if len(args.Failed) > 0 {
		fmt.Fprintf(&b, "\n## Failed sources (%d)\n\n", len(args.Failed))
		for _, f := range args.Failed {
			fmt.Fprintf(&b, "- %s: %s\n", shortLine(f.URL, 300), shortLine(f.Error, 300))
		}
	}
	text := b.String()
	return AnalyzeResult{
		Text:       text,
		Model:      OfflineModel,
		Offline:    true,
		InputChars: utf8.RuneCountInString(renderSources(args)),
	}
}

// describeJSON writes the shape of a JSON body and collects its terms.
func describeJSON(w *strings.Builder, raw json.RawMessage, terms map[string]int) {
	root, err := decodeOrdered(raw)
	if err != nil {
		describeText(w, string(raw), "", terms)
		return
	}
	root.collectTerms(terms)
	switch root.kind {
	case kindObject:
		fmt.Fprintf(w, "- JSON object with %s", countNoun(len(root.keys), "key", "keys"))
		if len(root.keys) > 0 {
			w.WriteString(": " + listKeys(root.keys, offlineMaxKeys))
		}
		w.WriteString("\n")
		for _, name := range notableFields {
			if v := root.field(name); v != nil && v.kind == kindString && strings.TrimSpace(v.str) != "" {
				fmt.Fprintf(w, "- %s: %q\n", name, shortLine(v.str, offlineMaxValueChars))
			}
		}
		arrays := 0
		for i, k := range root.keys {
			v := root.vals[i]
			if v.kind != kindArray {
				continue
			}
			if arrays == offlineMaxArrays {
				w.WriteString("- (more arrays not shown)\n")
				break
			}
			arrays++
			fmt.Fprintf(w, "- %s: %s\n", shortLine(k, 80), v.arraySummary())
			writeExamples(w, v)
		}
	case kindArray:
		fmt.Fprintf(w, "- JSON %s\n", root.arraySummary())
		if len(root.elems) > 0 && root.elems[0].kind == kindObject && len(root.elems[0].keys) > 0 {
			fmt.Fprintf(w, "- Keys of the first element: %s\n", listKeys(root.elems[0].keys, offlineMaxKeys))
		}
		writeExamples(w, root)
	case kindString:
		fmt.Fprintf(w, "- JSON string: %q\n", shortLine(root.str, offlineMaxValueChars))
	default:
		fmt.Fprintf(w, "- JSON %s: %s\n", root.kind, clipRunes(root.str, 60))
	}
}

// writeExamples quotes a notable field of the first few object elements.
func writeExamples(w *strings.Builder, arr *jsonNode) {
	shown := 0
	for _, el := range arr.elems {
		if shown == offlineMaxExamples {
			break
		}
		if el.kind != kindObject {
			continue
		}
		for _, name := range notableFields {
			if v := el.field(name); v != nil && v.kind == kindString && strings.TrimSpace(v.str) != "" {
				fmt.Fprintf(w, "  - %s: %q\n", name, shortLine(v.str, offlineMaxValueChars))
				shown++
				break
			}
		}
	}
}

// describeText writes line/word counts and a title of a text body.
func describeText(w *strings.Builder, text, contentType string, terms map[string]int) {
	text = strings.ToValidUTF8(text, "\uFFFD")
	title := ""
	if isHTML(contentType, text) {
		title = htmlTitle(text)
		text = stripHTML(text)
	}
	words := strings.Fields(text)
	lines := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			lines++
		}
		if title == "" {
			title = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), "#"))
		}
	}
	fmt.Fprintf(w, "- Text: %s, %s\n", countNoun(lines, "line", "lines"), countNoun(len(words), "word", "words"))
	if title != "" {
		fmt.Fprintf(w, "- Title: %q\n", shortLine(title, offlineMaxValueChars))
	}
	addTerms(terms, text)
}

func isHTML(contentType, text string) bool {
	if strings.Contains(strings.ToLower(contentType), "html") {
		return true
	}
	head := strings.ToLower(strings.TrimSpace(text[:min(len(text), 512)]))
	return strings.HasPrefix(head, "<!doctype html") || strings.HasPrefix(head, "<html")
}

// htmlTitle returns the text of the first <title> element.
func htmlTitle(s string) string {
	lower := strings.ToLower(s)
	i := strings.Index(lower, "<title")
	if i < 0 {
		return ""
	}
	j := strings.Index(lower[i:], ">")
	if j < 0 {
		return ""
	}
	start := i + j + 1
	end := strings.Index(lower[start:], "</title")
	if end < 0 {
		return ""
	}
	return strings.TrimSpace(s[start : start+end])
}

// stripHTML drops tags, comments and script/style bodies; good enough for
// counting terms, not a parser.
func stripHTML(s string) string {
	var b strings.Builder
	lower := strings.ToLower(s)
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		skipTo := ">"
		switch {
		case strings.HasPrefix(lower[i:], "<!--"):
			skipTo = "-->"
		case strings.HasPrefix(lower[i:], "<script"):
			skipTo = "</script>"
		case strings.HasPrefix(lower[i:], "<style"):
			skipTo = "</style>"
		}
		j := strings.Index(lower[i+1:], skipTo)
		if j < 0 {
			break
		}
		i += 1 + j + len(skipTo)
		b.WriteByte(' ')
	}
	return b.String()
}

// addTerms counts the meaningful words of s.
func addTerms(terms map[string]int, s string) {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		n := utf8.RuneCountInString(f)
		if n < offlineMinTermLen || n > offlineMaxTermLen {
			continue
		}
		hasLetter := false
		for _, r := range f {
			if unicode.IsLetter(r) {
				hasLetter = true
				break
			}
		}
		if !hasLetter {
			continue
		}
		t := strings.ToLower(f)
		if _, stop := stopWords[t]; stop {
			continue
		}
		terms[t]++
	}
}

type termCount struct {
	term  string
	count int
}

// topTerms returns the n most frequent terms, ties broken alphabetically.
func topTerms(terms map[string]int, n int) []termCount {
	out := make([]termCount, 0, len(terms))
	for t, c := range terms {
		out = append(out, termCount{t, c})
	}
	slices.SortFunc(out, func(a, b termCount) int {
		if a.count != b.count {
			return b.count - a.count
		}
		return strings.Compare(a.term, b.term)
	})
	return out[:min(n, len(out))]
}

func formatTerms(ts []termCount) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%s (%d)", t.term, t.count)
	}
	return strings.Join(parts, ", ")
}

func listKeys(keys []string, n int) string {
	shown := make([]string, 0, min(n, len(keys)))
	for _, k := range keys[:min(n, len(keys))] {
		shown = append(shown, shortLine(k, 60))
	}
	s := strings.Join(shown, ", ")
	if len(keys) > n {
		s += fmt.Sprintf(" (and %d more)", len(keys)-n)
	}
	return s
}

func countNoun(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// jsonKind names a JSON value's type.
type jsonKind string

const (
	kindObject jsonKind = "object"
	kindArray  jsonKind = "array"
	kindString jsonKind = "string"
	kindNumber jsonKind = "number"
	kindBool   jsonKind = "boolean"
	kindNull   jsonKind = "null"
)

// jsonNode is a decoded JSON value that keeps object keys in document order
// (a map would not), so summaries follow the source and stay deterministic.
type jsonNode struct {
	kind  jsonKind
	keys  []string    // object
	vals  []*jsonNode // object, parallel to keys
	elems []*jsonNode // array
	str   string      // string, number (as written), boolean, null
}

func decodeOrdered(raw []byte) (*jsonNode, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := decodeNode(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return n, nil
}

func decodeNode(dec *json.Decoder) (*jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &jsonNode{kind: kindObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeNode(dec)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			_, err := dec.Token() // '}'
			return n, err
		case '[':
			n := &jsonNode{kind: kindArray}
			for dec.More() {
				v, err := decodeNode(dec)
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, v)
			}
			_, err := dec.Token() // ']'
			return n, err
		}
		return nil, fmt.Errorf("unexpected delimiter %q", t)
	case string:
		return &jsonNode{kind: kindString, str: t}, nil
	case json.Number:
		return &jsonNode{kind: kindNumber, str: t.String()}, nil
	case bool:
		return &jsonNode{kind: kindBool, str: fmt.Sprint(t)}, nil
	case nil:
		return &jsonNode{kind: kindNull, str: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// field returns the value of the first key equal to name, or nil.
func (n *jsonNode) field(name string) *jsonNode {
	for i, k := range n.keys {
		if k == name {
			return n.vals[i]
		}
	}
	return nil
}

// arraySummary says "array of 3 objects", "array of 2 values (mixed)"...
func (n *jsonNode) arraySummary() string {
	if len(n.elems) == 0 {
		return "empty array"
	}
	kind := n.elems[0].kind
	for _, e := range n.elems[1:] {
		if e.kind != kind {
			return fmt.Sprintf("array of %s (mixed types)", countNoun(len(n.elems), "value", "values"))
		}
	}
	name := string(kind)
	if kind == kindNull {
		name = "null"
	}
	return "array of " + countNoun(len(n.elems), name, name+"s")
}

// collectTerms counts the words of every string value (keys are skipped:
// repeated field names would drown the content).
func (n *jsonNode) collectTerms(terms map[string]int) {
	switch n.kind {
	case kindString:
		addTerms(terms, n.str)
	case kindObject:
		for _, v := range n.vals {
			v.collectTerms(terms)
		}
	case kindArray:
		for _, v := range n.elems {
			v.collectTerms(terms)
		}
	}
}

// stopWords are dropped from term counts: common English words, and the
// noise of URLs and markup.
var stopWords = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, w := range strings.Fields(`
		a about above after again against all also am an and any are aren as at be because been before
		being below between both but by can cannot could did didn do does doesn doing don down during
		each few for from further get gets got had has hasn have haven having he her here hers herself him
		himself his how however i if in into is isn it its itself just let like may me might more most
		much must my myself no nor not now of off on once one only or other our ours ourselves out over per
		own same shall she should so some such than that the their theirs them themselves then there these
		they this those through to too under until up upon use used using very via was wasn we were weren
		what when where which while who whom why will with within without would yes yet you your yours
		yourself yourselves new true false null none nil
		http https www com org net html htm php asp json xml api amp nbsp quot apos lt gt href src
		div span class style script png jpg jpeg gif svg utm`) {
		m[w] = struct{}{}
	}
	return m
}()
