package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func (a *app) cancelCommand() *cobra.Command {
	var jobID string
	cmd := &cobra.Command{
		Use:   "cancel ID... | cancel --job JOB_ID",
		Short: "Cancel requests, or every request of a job, that have not finished",
		Long: `Ask the server to cancel requests that have not finished yet (DELETE
/api/v1/stagings/ID), or every unfinished request of a batch job (DELETE
/api/v1/jobs/JOB_ID). The server answers at once; the request ends as
cancelled shortly after, which 'stagectl watch' shows.

A request that already finished cannot be cancelled: it is reported with
the code already_finished. A server without the cancel API (older gateways
answer the DELETE with 405) is reported as not supporting cancel, and
nothing is changed.

Exit code: 0 every cancel was accepted, 1 one was refused (already
finished, unknown, not supported), 3 the server could not be reached.`,
		Example: `  stagectl cancel 6c1f2d7e-0b8a-4f4e-9a51-2f0c1e7d9b3a
  stagectl cancel --job 0d6a3f9c-2c41-4f0e-b1f7-5b6e2d8f4a11`,
		Args: func(_ *cobra.Command, args []string) error {
			if (jobID == "") == (len(args) == 0) {
				return usagef("give request IDs or --job JOB_ID")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, ids []string) error {
			if jobID != "" {
				return a.cancel(cmd.Context(), []string{jobID}, "/api/v1/jobs/")
			}
			return a.cancel(cmd.Context(), ids, "/api/v1/stagings/")
		},
	}
	cmd.Flags().StringVar(&jobID, "job", "", "cancel every unfinished request of this batch job")
	return cmd
}

// cancelResult is one line of cancel's --json output.
type cancelResult struct {
	ID        string    `json:"id"`
	Cancelled bool      `json:"cancel_requested"`
	Status    string    `json:"status,omitempty"`
	Error     *apiError `json:"error,omitempty"`
}

func (a *app) cancel(ctx context.Context, ids []string, prefix string) error {
	code := exitOK
	results := make([]cancelResult, 0, len(ids))
	for _, id := range ids {
		s, err := a.c.cancel(ctx, prefix+url.PathEscape(id))
		if errors.Is(err, errNoCancel) {
			return err // the same answer for every id: said once
		}
		r := cancelResult{ID: id, Cancelled: err == nil, Status: s.Status}
		if err != nil {
			r.Error = ptr(errorJSON(err))
			code = worse(code, exitCode(err))
			if !a.json {
				fmt.Fprintf(a.stderr, "%s: %s\n", id, describe(err))
			}
		} else if !a.json {
			fmt.Fprintf(a.stdout, "%s cancel requested\n", id)
		}
		results = append(results, r)
	}
	if a.json {
		if err := writeJSON(a.stdout, results); err != nil {
			return err
		}
	}
	if code != exitOK {
		return exitError{code}
	}
	return nil
}
