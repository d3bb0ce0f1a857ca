package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// countingWriter counts what was written, so an error knows whether
// stdout is still empty.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// describe is how an error reads for a person: a server's error as its
// code and detail, never as a Go error chain or raw JSON.
func describe(err error) string {
	var se *serverError
	if errors.As(err, &se) {
		if se.Code == "" {
			return se.Error()
		}
		s := fmt.Sprintf("%s: %s", se.Code, se.Detail)
		if se.ID != "" {
			s += " (recorded as " + se.ID + ")"
		}
		return s
	}
	return err.Error()
}

// errorJSON is err for --json output: always a code and a detail.
func errorJSON(err error) apiError {
	var se *serverError
	var ue *unreachableError
	switch {
	case errors.As(err, &se):
		if se.Code == "" {
			return apiError{Code: fmt.Sprintf("http_%d", se.Status), Detail: se.Error()}
		}
		return se.apiError
	case errors.As(err, &ue):
		return apiError{Code: "unreachable", Detail: ue.Error()}
	case errors.Is(err, errNoCancel):
		return apiError{Code: "cancel_unsupported", Detail: err.Error()}
	default:
		return apiError{Code: "failed", Detail: err.Error()}
	}
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

// size shows a byte count the way people read it.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// statusText is a status with its outcome or error code, the way every
// command shows a request's state in one word or two.
func statusText(s staging) string {
	switch {
	case s.Error != nil && s.Error.Code != "":
		return s.Status + " (" + s.Error.Code + ")"
	case s.Outcome != "":
		return s.Status + " (" + s.Outcome + ")"
	}
	return s.Status
}

// line is stateLine with the download link as a full URL.
func (a *app) line(s staging) string {
	if s.DownloadURL != "" {
		s.DownloadURL = a.c.resolve(s.DownloadURL)
	}
	return stateLine(s)
}

// stateLine is one line about a request: what the plain (no terminal)
// progress prints at each state change, and the summary after bars.
func stateLine(s staging) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.ID, statusText(s))
	switch {
	case s.Error != nil:
		fmt.Fprintf(&b, ": %s", s.Error.Detail)
	case s.Status == "running" && s.Progress != nil && s.Progress.BytesTotal > 0:
		fmt.Fprintf(&b, " %s of %s (%d%%)", size(s.Progress.BytesDone), size(s.Progress.BytesTotal), percent(s.Progress.BytesDone, s.Progress.BytesTotal))
	case s.Status == "succeeded":
		if s.Files > 0 || s.Bytes > 0 {
			fmt.Fprintf(&b, " %s, %s", size(s.Bytes), plural(s.Files, "file"))
		}
		if s.DownloadURL != "" {
			fmt.Fprintf(&b, " download: %s", s.DownloadURL)
		}
	}
	return b.String()
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return done * 100 / total
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// stagingExit is the exit code a request's state calls for.
func stagingExit(s staging) int {
	if s.finished() && s.Status != "succeeded" {
		return exitFailed
	}
	return exitOK
}
