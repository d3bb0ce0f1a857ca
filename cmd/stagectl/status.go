package main

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The read-only commands: status, job, list, methods.

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status ID...",
		Short: "Show the state of requests",
		Long: `Show the current state of one or more requests: status and outcome, method,
user, source and target, bytes and files staged, checksum, expiry (when the
server reports one), the download link of a direct_download request, and the
error code and detail of a failed or rejected one.

With --json it prints an array with one object per ID (the API's staging
state; an ID that could not be read has an "error" instead). The exit code is
the worst: 0 none failed (queued and running count as fine), 1 one failed,
was rejected or is unknown, 3 the server could not be reached.`,
		Example: `  stagectl status 6c1f2d7e-0b8a-4f4e-9a51-2f0c1e7d9b3a
  stagectl status --json ID1 ID2 | jq -r '.[].status'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			return a.status(cmd.Context(), ids)
		},
	}
}

func (a *app) status(ctx context.Context, ids []string) error {
	code := exitOK
	var out []any
	for i, id := range ids {
		s, err := a.c.staging(ctx, id)
		if err != nil {
			code = worse(code, exitCode(err))
			out = append(out, struct {
				ID    string   `json:"id"`
				Error apiError `json:"error"`
			}{id, errorJSON(err)})
			if !a.json {
				fmt.Fprintf(a.stderr, "%s: %s\n", id, describe(err))
			}
			continue
		}
		code = worse(code, stagingExit(s))
		out = append(out, s)
		if !a.json {
			if i > 0 {
				fmt.Fprintln(a.stdout)
			}
			a.printStaging(s)
		}
	}
	if a.json {
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	}
	if code != exitOK {
		return exitError{code}
	}
	return nil
}

// printStaging shows one request as "field: value" lines.
func (a *app) printStaging(s staging) {
	t := newTable(a.stdout)
	field := func(name, value string) {
		if value != "" {
			t.row(name+":", value)
		}
	}
	field("id", s.ID)
	field("job", s.JobID)
	field("status", statusText(s))
	field("method", s.Method)
	field("user", s.Username)
	field("source", s.LocalPathOnStorage)
	field("did", s.DID)
	field("target", s.RelativePath)
	if s.Progress != nil && s.Status == "running" {
		field("progress", fmt.Sprintf("%s of %s (%d%%), %d of %d files", size(s.Progress.BytesDone), size(s.Progress.BytesTotal),
			percent(s.Progress.BytesDone, s.Progress.BytesTotal), s.Progress.FilesDone, s.Progress.FilesTotal))
	}
	if s.Status == "succeeded" {
		field("bytes", fmt.Sprintf("%s (%d)", size(s.Bytes), s.Bytes))
		field("files", strconv.FormatInt(s.Files, 10))
	}
	field("adler32", s.Adler32)
	field("expires", when(s.ExpiresAt))
	if s.DownloadURL != "" {
		field("download", a.c.resolve(s.DownloadURL))
	}
	if s.Error != nil {
		field("error", s.Error.Code)
		field("detail", s.Error.Detail)
	}
	field("message", s.Message)
	field("created", when(s.CreatedAt))
	field("updated", when(&s.UpdatedAt))
	t.flush()
}

func (a *app) jobCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "job JOB_ID",
		Short: "Show a batch job and the state of each of its requests",
		Long: `Show a batch job (submitted with 'stagectl stage --from FILE'): its overall
status, how many requests are in each state, and a table of its requests
with status, outcome or error code, bytes, files and target.

With --json it prints the API's job object. Exit code: 0 no request failed,
1 one failed or was rejected (or the job is unknown), 3 the server could not
be reached. Follow a running job live with 'stagectl watch --job JOB_ID'.`,
		Example: `  stagectl job 0d6a3f9c-2c41-4f0e-b1f7-5b6e2d8f4a11`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := a.c.job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			code := exitOK
			for _, s := range j.Items {
				code = worse(code, stagingExit(s))
			}
			if a.json {
				if err := writeJSON(a.stdout, j); err != nil {
					return err
				}
			} else {
				a.printJob(j)
			}
			if code != exitOK {
				return exitError{code}
			}
			return nil
		},
	}
}

func (a *app) printJob(j job) {
	var counts []string
	for _, st := range []string{"queued", "running", "succeeded", "failed", "rejected", "cancelled", "expired"} {
		if n := j.Counts[st]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(a.stdout, "job %s: %s (%s)\n\n", j.JobID, j.Status, strings.Join(counts, ", "))
	t := newTable(a.stdout, "ID", "STATUS", "BYTES", "FILES", "METHOD", "TARGET", "DETAIL")
	for _, s := range j.Items {
		detail := ""
		if s.Error != nil {
			detail = s.Error.Detail
		}
		t.row(s.ID, statusText(s), size(s.Bytes), strconv.FormatInt(s.Files, 10), s.Method, s.RelativePath, detail)
	}
	t.flush()
}

type listOptions struct {
	user, status, method, since, job string
	limit                            int
}

// pageLimit is the API's largest page.
const pageLimit = 500

func (a *app) listCommand() *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List the history of requests (the audit), newest first",
		Long: `List past and current requests from the audit history, newest first, as a
table: created, id, user, method, status (with outcome or error code), bytes
and source. stagectl pages through the server's cursor itself until --limit
rows are shown or the history ends.

Without privileges on the server you see only your own requests.
With --json it prints an array of the API's records.`,
		Example: `  stagectl list --user alice
  stagectl list --status failed --since 24h
  stagectl list --method direct_download --since 2026-12-01T00:00:00Z --limit 500 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.list(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.user, "user", "u", "", "only this user's requests")
	f.StringVar(&o.status, "status", "", "only requests in this status: queued, running, succeeded, failed, rejected, cancelled, expired")
	f.StringVar(&o.method, "method", "", "only requests of this method (see 'stagectl methods')")
	f.StringVar(&o.since, "since", "", "only requests created since this time: RFC 3339 (2026-12-01T00:00:00Z) or a duration ago (90m, 24h, 7d)")
	f.StringVar(&o.job, "job", "", "only the requests of this batch job")
	f.IntVarP(&o.limit, "limit", "n", 50, "show at most this many requests")
	_ = cmd.RegisterFlagCompletionFunc("method", a.completeMethods)
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(
		[]string{"queued", "running", "succeeded", "failed", "rejected", "cancelled", "expired"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) list(ctx context.Context, o listOptions) error {
	if o.limit < 1 {
		return usagef("--limit must be at least 1")
	}
	q := url.Values{}
	for k, v := range map[string]string{"username": o.user, "status": o.status, "method": o.method, "job_id": o.job} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.since != "" {
		t, err := parseSince(o.since, time.Now())
		if err != nil {
			return err
		}
		q.Set("since", t.UTC().Format(time.RFC3339Nano))
	}
	records := []record{}
	for len(records) < o.limit {
		q.Set("limit", strconv.Itoa(min(o.limit-len(records), pageLimit)))
		page, err := a.c.list(ctx, q)
		if err != nil {
			return err
		}
		records = append(records, page.Items...)
		if page.NextCursor == "" || len(page.Items) == 0 {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if len(records) > o.limit {
		records = records[:o.limit]
	}
	if a.json {
		return writeJSON(a.stdout, records)
	}
	t := newTable(a.stdout, "CREATED", "ID", "USER", "METHOD", "STATUS", "BYTES", "SOURCE")
	for _, r := range records {
		st := r.Status
		switch {
		case r.ErrorCode != "":
			st += " (" + r.ErrorCode + ")"
		case r.Outcome != "":
			st += " (" + r.Outcome + ")"
		}
		t.row(when(&r.CreatedAt), r.ID, r.Username, r.Method, st, size(r.Bytes), cmp.Or(r.LocalPathOnStorage, r.DID))
	}
	t.flush()
	if len(records) == 0 {
		fmt.Fprintln(a.stderr, "no requests match")
	}
	return nil
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := parseLifetime(s); err == nil {
		return now.Add(-time.Duration(d) * time.Second), nil
	}
	return time.Time{}, usagef("--since %q is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration (90m, 24h, 7d)", s)
}

func (a *app) methodsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "methods",
		Short: "List the staging methods this site allows",
		Long: `List the staging methods the server allows, one a line (with --json, the
API's object {"allowed_methods": [...]}). These are the METHOD values
'stagectl stage' takes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := a.c.methods(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, map[string][]string{"allowed_methods": ms})
			}
			for _, m := range ms {
				fmt.Fprintln(a.stdout, m)
			}
			return nil
		},
	}
}
