package expiry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager/internal/expiry"
)

// The schedule is durable and shared: items scheduled by one stager,
// before NATS restarts, are removed after it by two other stagers
// together, each exactly once (one expired event per request), none
// missed.
func TestExpiryOutlivesRestartsAndSharesOut(t *testing.T) {
	storeDir, usersDir := t.TempDir(), t.TempDir()
	users, err := os.OpenRoot(usersDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })

	srv := natstest.StartServer(t, storeDir)
	nc, js := natstest.Connect(t, srv.ClientURL())
	first := &expiry.Keeper{JS: js, Users: users, Log: slog.New(slog.DiscardHandler), Source: "stager-1"}
	const n = 20
	var cmds []contract.Command
	for i := range n {
		cmd := contract.Command{
			SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: contract.MethodLocalCopy, Username: "alice",
			LocalPathOnStorage: "src.ms", RelativePath: fmt.Sprintf("staged/%d.ms", i), Lifetime: 2,
		}
		if err := os.MkdirAll(filepath.Join(usersDir, "alice", "staged"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(usersDir, "alice", cmd.RelativePath), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		due, err := first.Schedule(t.Context(), cmd, contract.OutcomeStaged)
		if err != nil || due.IsZero() {
			t.Fatalf("Schedule = %s, %v; want an expiry", due, err)
		}
		ok := contract.EventFor(cmd, contract.EventSucceeded)
		ok.ID, ok.Time, ok.Source, ok.Outcome, ok.ExpiresAt = uuid.NewString(), time.Now().UTC(), "stager-1", contract.OutcomeStaged, &due
		if err := bus.PublishEvent(t.Context(), js, ok); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()

	srv = natstest.StartServer(t, storeDir)
	_, js = natstest.Connect(t, srv.ClientURL())
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		k := &expiry.Keeper{JS: js, Users: users, Log: slog.New(slog.DiscardHandler), Source: fmt.Sprintf("stager-%d", i+2)}
		wg.Go(func() {
			if err := k.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() { stop(); wg.Wait() })

	events, err := js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "every item to expire", func() bool {
		info, err := events.Info(context.Background(), jetstream.WithSubjectFilter(contract.SubjectEventsAll))
		return err == nil && info.State.Msgs == 2*n
	})
	sources := map[string]int{}
	for _, cmd := range cmds {
		raw, err := events.GetLastMsgForSubject(t.Context(), contract.EventSubject(cmd.ID))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := contract.DecodeEvent(raw.Subject, raw.Data)
		if err != nil || ev.Type != contract.EventExpired {
			t.Errorf("%s: last event %s (%v), want expired", cmd.RelativePath, ev.Type, err)
		}
		sources[ev.Source]++
		if _, err := os.Lstat(filepath.Join(usersDir, "alice", cmd.RelativePath)); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", cmd.RelativePath, err)
		}
	}
	info, err := events.Info(t.Context(), jetstream.WithSubjectFilter(contract.SubjectEventsAll))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*n {
		t.Errorf("%d events, want %d: one succeeded and one expired per request", info.State.Msgs, 2*n)
	}
	t.Logf("expired by: %v", sources)
}

// The lifetime of a request: its own or the site's default, cut to the
// site's maximum; 0 is for ever.
func TestLifetime(t *testing.T) {
	for _, tt := range []struct {
		own      int64
		def, max time.Duration
		want     time.Duration
	}{
		{0, 0, 0, 0},
		{60, 0, 0, time.Minute},
		{0, time.Hour, 0, time.Hour},
		{60, time.Hour, 0, time.Minute},
		{7200, 0, time.Hour, time.Hour},
		{0, 0, time.Hour, time.Hour},
	} {
		k := expiry.Keeper{Default: tt.def, Max: tt.max}
		if got := k.Lifetime(contract.Command{Lifetime: tt.own}); got != tt.want {
			t.Errorf("lifetime %d, default %s, max %s: got %s, want %s", tt.own, tt.def, tt.max, got, tt.want)
		}
	}
}

// Requests staging the same item again at the same moment, on several
// stagers, each extend its one schedule: none is lost, and the latest
// expiry wins.
func TestConcurrentExtensions(t *testing.T) {
	_, js := natstest.JetStream(t)
	users := stagedVisMS(t)
	cmd := func(lifetime int64) contract.Command {
		return contract.Command{
			SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: contract.MethodLocalCopy, Username: "alice",
			LocalPathOnStorage: "vis.ms", RelativePath: "vis.ms", Lifetime: lifetime,
		}
	}
	keeper := func() *expiry.Keeper {
		return &expiry.Keeper{JS: js, Users: users, Log: slog.New(slog.DiscardHandler), Source: "stager"}
	}
	first := cmd(60)
	if _, err := keeper().Schedule(t.Context(), first, contract.OutcomeStaged); err != nil {
		t.Fatal(err)
	}
	ids := []string{first.ID}
	var latest time.Time
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 10 {
		c := cmd(int64(100 + i*100))
		ids = append(ids, c.ID)
		wg.Go(func() {
			due, err := keeper().Schedule(t.Context(), c, contract.OutcomeAlreadyPresent)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if due.After(latest) {
				latest = due
			}
		})
	}
	wg.Wait()
	stream, err := js.Stream(t.Context(), contract.StreamExpiries)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetLastMsgForSubject(t.Context(), contract.ExpiryScheduleSubject(contract.ExpiryKey("alice", "vis.ms")))
	if err != nil {
		t.Fatal(err)
	}
	var got contract.Expiry
	if err := json.Unmarshal(raw.Data, &got); err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(latest) || time.Until(got.ExpiresAt) < 999*time.Second {
		t.Errorf("the schedule expires at %s, want the latest, %s (about 1000 s away)", got.ExpiresAt, latest)
	}
	slices.Sort(ids)
	slices.Sort(got.RequestIDs)
	if !slices.Equal(got.RequestIDs, ids) {
		t.Errorf("the schedule names %d requests, want all %d", len(got.RequestIDs), len(ids))
	}
}

// A schedule NATS cannot take at once (here: its stream is missing for a
// moment) is tried again until it is taken, not given up: the item is
// staged, and a failed staging's next delivery would find it already
// present and give it no schedule.
func TestScheduleRetriesUntilTaken(t *testing.T) {
	_, js := natstest.JetStream(t)
	users := stagedVisMS(t)
	if err := js.DeleteStream(t.Context(), contract.StreamExpiries); err != nil {
		t.Fatal(err)
	}
	retried := make(chan struct{}, 100)
	log := slog.New(handlerFunc(func(r slog.Record) {
		if r.Message == "expiry_schedule_retry" {
			select {
			case retried <- struct{}{}:
			default:
			}
		}
	}))
	k := &expiry.Keeper{JS: js, Users: users, Log: log, Source: "stager"}
	cmd := contract.Command{
		SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: contract.MethodLocalCopy, Username: "alice",
		LocalPathOnStorage: "vis.ms", RelativePath: "vis.ms", Lifetime: 60,
	}
	type result struct {
		due time.Time
		err error
	}
	done := make(chan result, 1)
	go func() {
		due, err := k.Schedule(t.Context(), cmd, contract.OutcomeStaged)
		done <- result{due, err}
	}()
	<-retried
	if err := bus.EnsureStreams(t.Context(), js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.due.IsZero() {
			t.Errorf("Schedule = %s, %v; want an expiry once the stream is back", r.due, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Schedule did not return once the stream was back")
	}
}

// handlerFunc is a slog handler that hands each record to a function.
type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                 { return h }

// stagedVisMS is a user area holding alice's staged vis.ms, opened as the
// stager opens it.
func stagedVisMS(t *testing.T) *os.Root {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice", "vis.ms"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	users, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	return users
}
