package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type stageOptions struct {
	user     string
	did      string
	adler32  string
	lifetime string
	from     string
	wait     bool
}

func (a *app) stageCommand() *cobra.Command {
	var o stageOptions
	cmd := &cobra.Command{
		Use:   "stage METHOD SOURCE TARGET --user USER [flags]\n  stagectl stage METHOD TARGET --did SCOPE:NAME --user USER [flags]\n  stagectl stage --from FILE [--user USER] [flags]",
		Short: "Submit a staging request (or a batch job from a file) and print its id",
		Long: `Submit one staging request and print its id, or a batch job from a file and
print the job's id.

  METHOD  how to stage (see 'stagectl methods'):
            local_copy       copy into your user area (read-only copy)
            local_symlink    symbolic link in your user area
            local_hardlink   hard link in your user area (same filesystem only)
            direct_download  issue an expiring download link ('stagectl download')
            jupyter_copy     upload into your JupyterHub server
  SOURCE  the data on the site's storage: a path relative to the storage
          root (sample/hello.txt) or absolute inside it
  TARGET  where it goes, relative to your user area (hello.txt)

Instead of SOURCE, --did names the data by its Rucio DID (scope:name), on
servers set up with the site's Rucio: give METHOD TARGET and --did, never
both SOURCE and --did. A file DID becomes one file at TARGET, a dataset or
container a directory there holding its files; every file is checked
against the catalogue's size and adler32 (so --adler32 does not go with
--did). A server without Rucio refuses it with method_not_allowed.

With --wait, stagectl follows the request to its end with a progress bar
(as 'stagectl watch' does) and exits with its outcome: 0 succeeded, 1 failed
or rejected.

A batch (--from FILE, or - for stdin) holds one item a line, as CSV or as JSON
lines (chosen by the extension .csv, .jsonl or .ndjson, else by the first
character). CSV columns are method,source,target[,user[,adler32]], or any
order a header line names (method, user, source, did, target, adler32,
lifetime; the API's names username, local_path_on_storage, relative_path and
expected_adler32 work too); an item names a source or a did, not both. A
JSON line is the API's item:
  {"method":"local_copy","username":"alice","local_path_on_storage":"a.fits","relative_path":"a.fits"}
  {"method":"local_copy","username":"alice","did":"testsrc:ds1","relative_path":"ds1"}
Lines starting with # are comments. --user fills in the user of items
without one. The job is sent with an Idempotency-Key derived from the
items, so running the same command again is safe: the server answers with
the job it already has instead of staging everything twice.`,
		Example: `  stagectl stage local_copy sample/hello.txt hello.txt --user alice
  stagectl stage local_copy obs/1234/vis.ms vis.ms --user alice --wait
  stagectl stage local_copy data/a.fits a.fits --user alice --adler32 0a1b2c3d
  stagectl stage local_copy ds1 --did testsrc:ds1 --user alice --wait
  id=$(stagectl stage direct_download sample/hello.txt hello.txt --user alice)
  stagectl stage --from items.csv --user alice --wait`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case o.from != "" && len(args) > 0:
				return usagef("give METHOD SOURCE TARGET or --from FILE, not both")
			case o.from != "" && o.did != "":
				return usagef("--did names the source of one request; in a --from file give each item's did (a did column or field)")
			case o.did != "" && len(args) == 3:
				return usagef("give SOURCE or --did, not both: with --did the arguments are METHOD TARGET")
			case o.did != "" && len(args) != 2:
				return usagef("stage --did needs METHOD TARGET, got %d argument(s)", len(args))
			case o.from == "" && o.did == "" && len(args) != 3:
				return usagef("stage needs METHOD SOURCE TARGET (or METHOD TARGET --did SCOPE:NAME, or --from FILE), got %d argument(s)", len(args))
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return a.completeMethods(cmd, args, toComplete)
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.from != "":
				return a.stageBatch(cmd.Context(), o)
			case o.did != "":
				return a.stageOne(cmd.Context(), o, item{Method: args[0], DID: o.did, RelativePath: args[1]})
			}
			return a.stageOne(cmd.Context(), o, item{Method: args[0], LocalPathOnStorage: args[1], RelativePath: args[2]})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.user, "user", "u", "", "the user to stage for: the owner of the user area (required without --from)")
	f.StringVar(&o.did, "did", "", "the source as a Rucio DID (scope:name) instead of SOURCE; the arguments are then METHOD TARGET")
	f.StringVar(&o.adler32, "adler32", "", "the source's adler32 checksum (8 hex digits, as Rucio reports it); the copy is checked against it")
	f.StringVar(&o.lifetime, "lifetime", "", "how long the staged data should be kept, as seconds or a duration (90m, 24h, 7d); only for servers with request lifetimes")
	f.StringVar(&o.from, "from", "", "submit a batch job from this CSV or JSON-lines file (- for stdin)")
	f.BoolVarP(&o.wait, "wait", "w", false, "follow the request (or job) to its end with progress, and exit with its outcome")
	return cmd
}

// stageOne submits it, the request the arguments name, with the user and
// checksum of the flags.
func (a *app) stageOne(ctx context.Context, o stageOptions, it item) error {
	if o.user == "" {
		return usagef("--user is required: the user whose area receives the data")
	}
	if o.did != "" && o.adler32 != "" {
		return usagef("--adler32 does not go with --did: every file of a DID is checked against the catalogue's adler32")
	}
	it.Username, it.ExpectedAdler32 = o.user, o.adler32
	if o.lifetime != "" {
		secs, err := parseLifetime(o.lifetime)
		if err != nil {
			return err
		}
		it.Lifetime = secs
		a.checkLifetimeSupport(ctx)
	}
	sub, err := a.c.submit(ctx, it)
	if err != nil {
		return lifetimeRefusal(err, it.Lifetime != 0)
	}
	if !o.wait {
		if a.json {
			return writeJSON(a.stdout, sub)
		}
		fmt.Fprintln(a.stdout, sub.ID)
		return nil
	}
	if !a.json {
		fmt.Fprintf(a.stderr, "submitted %s\n", sub.ID)
	}
	return a.follow(ctx, []string{sub.ID})
}

// checkLifetimeSupport warns when the server's API document has no
// lifetime field: the gateway ignores JSON fields it does not know, so such
// a server would accept --lifetime and silently not apply it.
func (a *app) checkLifetimeSupport(ctx context.Context) {
	if has, ok := a.c.apiDocHasField(ctx, "lifetime"); ok && !has {
		fmt.Fprintln(a.stderr, "stagectl: warning: this server's API does not list a lifetime field; it may ignore --lifetime")
	}
}

// lifetimeRefusal makes a server's refusal of the lifetime field say so:
// a server strict about unknown fields answers a malformed body.
func lifetimeRefusal(err error, sentLifetime bool) error {
	var se *serverError
	if !sentLifetime || !errors.As(err, &se) || se.Status >= 500 || !strings.Contains(se.Detail, "lifetime") {
		return err
	}
	refused := *se
	refused.Detail = "the server refused --lifetime (it may not support request lifetimes; leave the flag out): " + se.Detail
	return &refused
}

// parseLifetime reads seconds ("3600") or a duration ("90m", "24h", "7d").
func parseLifetime(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0, usagef("--lifetime must be positive, not %s", s)
		}
		return n, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return 0, usagef("--lifetime %q is not seconds or a duration such as 90m, 24h or 7d", s)
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, usagef("--lifetime %q is not seconds or a duration such as 90m, 24h or 7d", s)
		}
	}
	if d < time.Second {
		return 0, usagef("--lifetime must be at least one second, not %s", s)
	}
	return int64(d / time.Second), nil
}

func (a *app) stageBatch(ctx context.Context, o stageOptions) error {
	items, err := readItems(a.stdin, o.from, o.user)
	if err != nil {
		return err
	}
	if o.adler32 != "" || o.lifetime != "" {
		return usagef("--adler32 and --lifetime apply to one request; give them per item in the file")
	}
	withLifetime := slices.ContainsFunc(items, func(it item) bool { return it.Lifetime != 0 })
	if withLifetime {
		a.checkLifetimeSupport(ctx)
	}
	key, err := idempotencyKey(items)
	if err != nil {
		return err
	}
	j, err := a.c.submitJob(ctx, items, key)
	if err != nil {
		return lifetimeRefusal(err, withLifetime)
	}
	code := exitOK
	for i, it := range j.Items {
		if it.Error != nil {
			code = exitFailed
			if !a.json {
				fmt.Fprintf(a.stderr, "item %d (%s) %s: %s: %s\n", i+1, it.ID, it.Status, it.Error.Code, it.Error.Detail)
			}
		}
	}
	if o.wait {
		if !a.json {
			how := "submitted"
			if j.Replayed {
				how = "already submitted (same file): following"
			}
			fmt.Fprintf(a.stderr, "%s job %s with %d items\n", how, j.JobID, len(j.Items))
		}
		return a.followJob(ctx, j.JobID)
	}
	if a.json {
		if err := writeJSON(a.stdout, j); err != nil {
			return err
		}
	} else {
		if j.Replayed {
			fmt.Fprintf(a.stderr, "this file was already submitted: job %s\n", j.JobID)
		}
		fmt.Fprintln(a.stdout, j.JobID)
	}
	if code != exitOK {
		return exitError{code}
	}
	return nil
}

// idempotencyKey derives the job's Idempotency-Key from its items, so the
// same file (with the same defaults) is the same job.
func idempotencyKey(items []item) (string, error) {
	data, err := json.Marshal(items)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return "stagectl-" + hex.EncodeToString(sum[:]), nil
}

// readItems reads a batch file: CSV or JSON lines. defaultUser fills in
// items without a user.
func readItems(stdin io.Reader, path, defaultUser string) ([]item, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("--from: %v", err)
	}
	var items []item
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".csv":
		items, err = csvItems(data)
	case ext == ".jsonl" || ext == ".ndjson" || ext == ".json":
		items, err = jsonItems(data)
	case bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")):
		items, err = jsonItems(data)
	default:
		items, err = csvItems(data)
	}
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, usagef("%s holds no items", path)
	}
	for i := range items {
		if items[i].Username == "" {
			if defaultUser == "" {
				return nil, usagef("%s: item %d has no user; add one or give --user", path, i+1)
			}
			items[i].Username = defaultUser
		}
	}
	return items, nil
}

func jsonItems(data []byte) ([]item, error) {
	var items []item
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var it item
		if err := dec.Decode(&it); err != nil {
			return nil, usagef("line %d: not an item of the API (method, username, local_path_on_storage or did, relative_path, expected_adler32, lifetime): %v", n+1, err)
		}
		items = append(items, it)
	}
	return items, nil
}

// csvColumns maps a header's names onto the fields of an item.
var csvColumns = map[string]string{
	"method": "method", "user": "user", "username": "user",
	"source": "source", "local_path_on_storage": "source",
	"did":    "did",
	"target": "target", "relative_path": "target",
	"adler32": "adler32", "expected_adler32": "adler32",
	"lifetime": "lifetime",
}

func csvItems(data []byte) ([]item, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	rows, err := r.ReadAll()
	if err != nil {
		return nil, usagef("not a CSV file: %v", err)
	}
	cols := []string{"method", "source", "target", "user", "adler32"}
	// A header names a column "method"; no item has that method.
	if len(rows) > 0 && slices.ContainsFunc(rows[0], func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), "method") }) {
		cols = cols[:0]
		for _, h := range rows[0] {
			c, ok := csvColumns[strings.ToLower(strings.TrimSpace(h))]
			if !ok {
				return nil, usagef("CSV header: unknown column %q (known: method, user, source, did, target, adler32, lifetime)", h)
			}
			cols = append(cols, c)
		}
		rows = rows[1:]
	}
	var items []item
	for n, row := range rows {
		if len(row) < 3 || len(row) > len(cols) {
			return nil, usagef("CSV row %d: %d fields; want method,source,target[,user[,adler32]] or the header's columns", n+1, len(row))
		}
		var it item
		for i, v := range row {
			v = strings.TrimSpace(v)
			switch cols[i] {
			case "method":
				it.Method = v
			case "user":
				it.Username = v
			case "source":
				it.LocalPathOnStorage = v
			case "did":
				it.DID = v
			case "target":
				it.RelativePath = v
			case "adler32":
				it.ExpectedAdler32 = v
			case "lifetime":
				if v != "" {
					secs, err := parseLifetime(v)
					if err != nil {
						return nil, usagef("CSV row %d: %v", n+1, err)
					}
					it.Lifetime = secs
				}
			}
		}
		items = append(items, it)
	}
	return items, nil
}
