package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Celery is the outcome of the Celery peer script (../shared/bench/celery/run.sh):
// its output lines and the figures read from them, keyed like "W3 rate".
type Celery struct {
	Script  string             `json:"script"`
	Skipped string             `json:"skipped,omitempty"`
	Error   string             `json:"error,omitempty"`
	Output  []string           `json:"output,omitempty"`
	Figures map[string]float64 `json:"figures,omitempty"`
}

const celeryTimeout = 15 * time.Minute

// defaultCeleryScript is ../shared/bench/celery/run.sh from the module root
// (the nearest directory up from here holding go.mod), or from the working
// directory when there is none.
func defaultCeleryScript() string {
	dir, err := os.Getwd()
	if err != nil {
		dir = "."
	}
	root := dir
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			root = d
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return filepath.Join(root, "..", "shared", "bench", "celery", "run.sh")
}

// runCelery runs the peer script when it exists and reads its figures.
func runCelery(ctx context.Context, o Options) *Celery {
	c := &Celery{Script: o.CeleryScript}
	if o.NoCelery {
		c.Skipped = "turned off (NoCelery / --no-celery)"
		return c
	}
	if o.Quick {
		c.Skipped = "not in a quick run (Celery's own run takes minutes)"
		return c
	}
	if !needsCelery(o.Workloads) {
		c.Skipped = "no Celery workload (W1–W4) selected"
		return c
	}
	if _, err := os.Stat(o.CeleryScript); err != nil {
		c.Skipped = "the script is absent"
		return c
	}
	fmt.Fprintf(o.Progress, "bench: Celery peer (%s) …\n", o.CeleryScript)
	ctx, cancel := context.WithTimeout(ctx, celeryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.CeleryScript)
	// Its own process group, stopped with SIGTERM: the script's trap and
	// celery_bench.py's finally then stop its redis-server and workers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, o.Progress)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			c.Output = append(c.Output, l)
		}
	}
	if err != nil {
		c.Error = err.Error()
	}
	c.Figures = parseCelery(c.Output)
	return c
}

func needsCelery(ws []string) bool {
	for _, w := range ws {
		if w != "W5" {
			return true
		}
	}
	return false
}

var (
	reCeleryLine = regexp.MustCompile(`^celery (W[1-4]) `)
	reRate       = regexp.MustCompile(`([0-9.]+) (?:tasks|chains|chords)/s`)
	reP50        = regexp.MustCompile(`p50 ([0-9.]+) ms`)
	reP99        = regexp.MustCompile(`p99 ([0-9.]+) ms`)
)

// parseCelery reads run.sh's lines: "celery W1 enqueue …: 8.00s  2500 tasks/s",
// "celery W2 process …: incl. worker boot … = N tasks/s; from first consume … = M tasks/s",
// "celery W3 chain …: … = N chains/s …; latency p50 X ms p99 Y ms …".
// For W2 the last rate (from first consume, excluding Python's worker
// boot) is kept: the figure most favourable to Celery.
func parseCelery(lines []string) map[string]float64 {
	figs := map[string]float64{}
	for _, l := range lines {
		m := reCeleryLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		w := m[1]
		if rs := reRate.FindAllStringSubmatch(l, -1); len(rs) > 0 {
			if v, err := strconv.ParseFloat(rs[len(rs)-1][1], 64); err == nil {
				figs[w+" rate"] = v
			}
		}
		for key, re := range map[string]*regexp.Regexp{"p50": reP50, "p99": reP99} {
			if s := re.FindStringSubmatch(l); s != nil {
				if v, err := strconv.ParseFloat(s[1], 64); err == nil {
					figs[w+" "+key] = v
				}
			}
		}
	}
	return figs
}

// attach puts the Celery figures beside the matching rows.
func (c *Celery) attach(rows []Row) {
	if c == nil || len(c.Figures) == 0 {
		return
	}
	for i := range rows {
		r := &rows[i]
		var key string
		switch {
		case r.Workload == "W1" && strings.Contains(r.Name, "sequential"):
			key = "W1 rate" // Celery's W1 is one producer
		case r.Workload == "W2", (r.Workload == "W3" || r.Workload == "W4") && r.Unit != "ms":
			key = r.Workload + " rate"
		case (r.Workload == "W3" || r.Workload == "W4") && strings.HasSuffix(r.Name, "p50"):
			key = r.Workload + " p50"
		case (r.Workload == "W3" || r.Workload == "W4") && strings.HasSuffix(r.Name, "p99"):
			key = r.Workload + " p99"
		}
		if v, ok := c.Figures[key]; ok && v > 0 {
			r.Celery = v
			r.CeleryRatio = r.Baton / v
		}
	}
}

func (c *Celery) write(w io.Writer) {
	if c == nil {
		return
	}
	if c.Skipped != "" {
		fmt.Fprintf(w, "Celery figures skipped: %s (%s).\n", c.Skipped, c.Script)
		return
	}
	fmt.Fprintf(w, "Celery peer (%s", c.Script)
	if c.Error != "" {
		fmt.Fprintf(w, ", failed: %s", c.Error)
	}
	fmt.Fprintln(w, "):")
	for _, l := range c.Output {
		fmt.Fprintln(w, "  "+l)
	}
}
