package dash

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

type pages struct{ t *template.Template }

func mustPages() *pages {
	t := template.Must(template.New("").Funcs(template.FuncMap{
		"dur":      fmtDuration,
		"durMS":    func(ms int64) string { return fmtDuration(time.Duration(ms) * time.Millisecond) },
		"when":     fmtTime,
		"truncate": truncate,
		"add":      func(a, b int) int { return a + b },
		"pct": func(done, total int) int {
			if total == 0 {
				return 0
			}
			return done * 100 / total
		},
		"terminal": terminal,
		"f1":       func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"pctf":     func(f float64) int { return int(f*100 + 0.5) },
		"plural": func(n int, word string) string {
			if n == 1 {
				return fmt.Sprintf("%d %s", n, word)
			}
			if strings.HasSuffix(word, "y") {
				return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
			}
			return fmt.Sprintf("%d %ss", n, word)
		},
	}).ParseFS(uiFS, "ui/*.html"))
	return &pages{t: t}
}

func (p *pages) execute(w io.Writer, name string, data any) error {
	return p.t.ExecuteTemplate(w, name, data)
}

// fmtDuration is a short human duration: 850ms, 4.2s, 3m07s, 2h05m.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
