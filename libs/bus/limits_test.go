package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
)

// TestRequestsStreamRefusesWhenFull checks that a full STAGING_REQUESTS
// refuses a new command, by count and by size, so its publisher hears of
// it, and keeps the commands it holds.
func TestRequestsStreamRefusesWhenFull(t *testing.T) {
	tests := []struct {
		name string
		opts bus.StreamOptions
	}{
		{"messages", bus.StreamOptions{RequestsMaxMsgs: 2}},
		// Two commands of about 250 bytes each and their headers fit.
		{"bytes", bus.StreamOptions{RequestsMaxBytes: 800}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, js := natstest.JetStream(t)
			ctx := t.Context()
			if err := bus.EnsureStreams(ctx, js, tt.opts); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := bus.PublishCommand(ctx, js, command(fmt.Sprint("req-", i))); err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
			}
			err := bus.PublishCommand(ctx, js, command("req-full"))
			if !bus.IsStreamFull(err) {
				t.Fatalf("publish to a full stream: got %v, want a refusal IsStreamFull knows", err)
			}
			if got := requestsHeld(ctx, t, js); got != 2 {
				t.Errorf("commands held: got %d, want 2 (none dropped for the new one)", got)
			}
		})
	}
}

func TestIsStreamFullOnlyForFull(t *testing.T) {
	_, js := natstest.JetStream(t)
	cmd := command("req-x")
	cmd.Method = "teleport"
	if err := bus.PublishCommand(t.Context(), js, cmd); err == nil || bus.IsStreamFull(err) {
		t.Errorf("IsStreamFull(%v) = true, want false", err)
	}
	if bus.IsStreamFull(nil) {
		t.Error("IsStreamFull(nil) = true")
	}
}

// TestEnsureStreamsBoundsExistingRequests checks the upgrade: a
// STAGING_REQUESTS made by a version without bounds gains them when the
// services start, and keeps the commands it holds.
func TestEnsureStreamsBoundsExistingRequests(t *testing.T) {
	_, js := natstest.JetStream(t)
	ctx := t.Context()
	if err := js.DeleteStream(ctx, contract.StreamRequests); err != nil {
		t.Fatal(err)
	}
	// What the version before created.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: contract.StreamRequests, Subjects: contract.RequestSubjects(contract.Methods...),
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: contract.DedupWindow,
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := bus.PublishCommand(ctx, js, command(fmt.Sprint("req-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{RequestsMaxMsgs: 3}); err != nil {
		t.Fatalf("EnsureStreams over the unbounded stream: %v", err)
	}
	s, err := js.Stream(ctx, contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgs != 3 || cfg.MaxAge != contract.DefaultRequestsMaxAge || cfg.MaxBytes != contract.DefaultRequestsMaxBytes || cfg.Discard != jetstream.DiscardNew {
		t.Errorf("bounds after the update: max_msgs %d, max_age %s, max_bytes %d, discard %s", cfg.MaxMsgs, cfg.MaxAge, cfg.MaxBytes, cfg.Discard)
	}
	if got := requestsHeld(ctx, t, js); got != 3 {
		t.Errorf("commands held after the update: got %d, want 3", got)
	}
	if err := bus.PublishCommand(ctx, js, command("req-4")); !bus.IsStreamFull(err) {
		t.Errorf("publish after the update: got %v, want the stream full", err)
	}
}

// TestRequestsStreamMaxAgeCoversDedupWindow checks that a max age shorter
// than the deduplication window, which the server cannot take, is refused
// with the reason, and that the window itself is taken.
func TestRequestsStreamMaxAgeCoversDedupWindow(t *testing.T) {
	_, js := natstest.JetStream(t)
	ctx := t.Context()
	err := bus.EnsureStreams(ctx, js, bus.StreamOptions{RequestsMaxAge: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "deduplication window") {
		t.Errorf("EnsureStreams with a max age of a minute: got %v, want a refusal naming the deduplication window", err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{RequestsMaxAge: contract.DedupWindow}); err != nil {
		t.Errorf("EnsureStreams with a max age of the deduplication window: %v", err)
	}
}

func requestsHeld(ctx context.Context, t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
