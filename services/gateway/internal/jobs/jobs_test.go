package jobs_test

import (
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/jobs"
)

func TestOverall(t *testing.T) {
	const (
		q  = contract.StatusQueued
		r  = contract.StatusRunning
		ok = contract.StatusSucceeded
		f  = contract.StatusFailed
		rj = contract.StatusRejected
		c  = contract.StatusCancelled
		ex = contract.StatusExpired
	)
	tests := []struct {
		name     string
		statuses []contract.Status
		want     jobs.State
	}{
		{"no items yet", nil, jobs.Running},
		{"one queued", []contract.Status{ok, q}, jobs.Running},
		{"one running", []contract.Status{r, f}, jobs.Running},
		{"all succeeded", []contract.Status{ok, ok}, jobs.Completed},
		{"some failed", []contract.Status{ok, f}, jobs.Partial},
		{"some rejected", []contract.Status{rj, ok, ok}, jobs.Partial},
		{"none succeeded", []contract.Status{f, rj}, jobs.Failed},
		{"all cancelled", []contract.Status{c, c}, jobs.Cancelled},
		{"some cancelled", []contract.Status{c, ok}, jobs.Partial},
		{"cancelled and failed", []contract.Status{c, f}, jobs.Failed},
		{"some expired", []contract.Status{ok, ex}, jobs.Completed},
		{"expired and failed", []contract.Status{ex, f}, jobs.Partial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobs.Overall(tt.statuses); got != tt.want {
				t.Errorf("Overall(%v) = %s, want %s", tt.statuses, got, tt.want)
			}
		})
	}
}

func TestItemIDStable(t *testing.T) {
	a, b := jobs.ItemID("job-1", 0), jobs.ItemID("job-1", 1)
	if a == b || a != jobs.ItemID("job-1", 0) || a == jobs.ItemID("job-2", 0) {
		t.Errorf("item ids not stable and distinct: %s %s", a, b)
	}
	if err := contract.ValidateID("id", a); err != nil {
		t.Error(err)
	}
}
