package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/backoff"
)

func TestDelay(t *testing.T) {
	e := backoff.Exponential{Base: time.Second, Max: 10 * time.Second}
	var got []time.Duration
	for attempt := 0; attempt <= 6; attempt++ {
		got = append(got, e.Delay(attempt))
	}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("delays (-got +want):\n%s", diff)
	}
	if got := (backoff.Exponential{Base: time.Second, Max: time.Millisecond}).Delay(3); got != time.Second {
		t.Errorf("Max below Base: got %v, want Base", got)
	}
	if got := e.Delay(1 << 30); got != 10*time.Second {
		t.Errorf("a huge attempt: got %v, want Max", got)
	}
}

func TestWait(t *testing.T) {
	if err := backoff.Wait(t.Context(), time.Millisecond); err != nil {
		t.Errorf("a wait that ran out: %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := backoff.Wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("a wait whose context ended: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("a wait whose context ended took %s", d)
	}
}
