package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// row is one line of the table: a comparison of two sides, or an SSE
// fan-out measurement.
type row struct {
	name         string
	a, b         *result // a is the plain gateway
	wantA, wantB int
	sse          *sseResult
	fixed        []string // cells after the name, for rows that are not comparisons
	note         string
}

var header = []string{
	"case", "plain req/s", "etag req/s", "etag/plain",
	"plain p50", "plain p99", "etag p50", "etag p99",
	"gateway CPU/req plain → etag", "allocs/req plain → etag", "upstream/req plain → etag", "notes",
}

func printTable(w io.Writer, rows []row, batch time.Duration) {
	cells := [][]string{header}
	for _, r := range rows {
		cells = append(cells, r.cells(batch))
	}
	width := make([]int, len(header))
	for _, line := range cells {
		for i, c := range line {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for n, line := range cells {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range line {
			pad := width[i] - len([]rune(c))
			if i == 0 || i == len(line)-1 {
				fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", pad))
			} else {
				fmt.Fprintf(&b, " %s%s |", strings.Repeat(" ", pad), c)
			}
		}
		fmt.Fprintln(w, b.String())
		if n == 0 {
			b.Reset()
			b.WriteString("|")
			for i := range line {
				if i == 0 || i == len(line)-1 {
					b.WriteString(strings.Repeat("-", width[i]+2) + "|")
				} else {
					b.WriteString(strings.Repeat("-", width[i]+1) + ":|")
				}
			}
			fmt.Fprintln(w, b.String())
		}
	}
}

func (r row) cells(batch time.Duration) []string {
	const na = "–"
	c := []string{r.name, na, na, na, na, na, na, na, na, na, na, r.note}
	switch {
	case r.fixed != nil:
		copy(c[1:], r.fixed)
	case r.sse != nil:
		s := r.sse
		var notes []string
		notes = append(notes, fmt.Sprintf("%d/%d connected in %s", s.connected, s.subscribers, s.connectTime.Round(10*time.Millisecond)))
		if len(s.refused) > 0 {
			notes = append(notes, "refused: "+s.refusedText())
		}
		if s.connected > 0 {
			notes = append(notes,
				fmt.Sprintf("memory/subscriber %s (heap %s + stacks %s; RSS %s); %.1f goroutines/subscriber",
					humanBytes(s.heapPerSub+s.stackPerSub), humanBytes(s.heapPerSub), humanBytes(s.stackPerSub), humanBytes(s.rssPerSub), s.goroutines),
				fmt.Sprintf("%d/%d deliveries, %.1f%% within batch+100ms", s.delivered, s.connected*s.events, 100*s.withinShare(batch+100*time.Millisecond)))
			c[6], c[7] = fmtDur(s.percentile(0.50)), fmtDur(s.percentile(0.99))
		}
		if s.cpuOK {
			notes = append(notes, fmt.Sprintf("CPU per event: gateway %s, receiving clients %s", fmtDur(s.gwCPU), fmtDur(s.selfCPU)))
		}
		if n := s.overflows.Load(); n > 0 {
			notes = append(notes, fmt.Sprintf("%d overflow events", n))
		}
		if n := s.dropped.Load(); n > 0 {
			notes = append(notes, fmt.Sprintf("%d streams ended early", n))
		}
		c[11] = joinNotes(append(notes, r.note)...)
	case r.a != nil && r.b != nil:
		c[1], c[2] = fmt.Sprintf("%.0f", r.a.rps()), fmt.Sprintf("%.0f", r.b.rps())
		if med, lo, hi := r.b.ratio(r.a); med > 0 {
			c[3] = fmt.Sprintf("%.2f", med)
			if len(r.b.perRound) > 1 {
				c[3] += fmt.Sprintf(" (%.2f–%.2f)", lo, hi)
			}
		}
		c[4], c[5] = fmtDur(r.a.percentile(0.50)), fmtDur(r.a.percentile(0.99))
		c[6], c[7] = fmtDur(r.b.percentile(0.50)), fmtDur(r.b.percentile(0.99))
		c[8] = fmtDur(r.a.cpuPerReq()) + " → " + fmtDur(r.b.cpuPerReq())
		c[9] = fmtAllocs(r.a.allocsPerReq()) + " → " + fmtAllocs(r.b.allocsPerReq())
		c[10] = fmt.Sprintf("%.2f → %.2f", r.a.upstreamPerReq(), r.b.upstreamPerReq())
		var notes []string
		if p := r.a.problems(r.wantA); p != "" {
			notes = append(notes, "plain: "+p)
		}
		if p := r.b.problems(r.wantB); p != "" {
			notes = append(notes, "etag: "+p)
		}
		c[11] = joinNotes(append(notes, r.note)...)
	}
	return c
}

func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

func fmtAllocs(v float64) string {
	if v < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func humanSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<20 || v <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10 || v <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", v)
	}
}

// thousands writes n with comma separators: 10000 → "10,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
