// Package expiry keeps the lifetime of staged items: after a staging it
// records when the item goes, as a JetStream message schedule (one per
// item, in STAGING_EXPIRIES), and when the schedule fires it removes the
// item from the user's area, if it is still what the stager left there, and
// publishes expired on the requests that staged it.
//
// The schedule lives in the stream: it outlives restarts of the stagers and
// of NATS, and its due message is a work-queue message that one stager of
// many takes, and that comes back should that stager die before it is done.
package expiry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Keeper schedules and carries out the expiry of staged items.
type Keeper struct {
	JS    jetstream.JetStream
	Users *os.Root // the user area root
	// Default is the lifetime of a request that names none, Max caps
	// every lifetime; 0 means for ever.
	Default, Max time.Duration
	Log          *slog.Logger
	Source       string // names the service in events
	// AckWait configures the consumer of due expiries (default 30 s).
	AckWait time.Duration

	// streams holds the streams read on the way of every staging.
	streams bus.Streams
}

// Lifetime is how long the item cmd stages is kept: its own lifetime or
// the default, capped by the maximum; 0 for ever.
func (k *Keeper) Lifetime(cmd contract.Command) time.Duration {
	d := time.Duration(cmd.Lifetime) * time.Second
	if d == 0 {
		d = k.Default
	}
	if k.Max > 0 && (d == 0 || d > k.Max) {
		d = k.Max
	}
	return d
}

// Schedule records the lifetime of the item cmd staged with outcome and
// returns when it expires, zero for never. A staged item gets a schedule
// of its own (replacing one left by an item that was there before). An
// item already present keeps its schedule, extended to cmd's expiry when
// that is later, and cmd is added to the requests it names; one without a
// schedule was not left by a staging with a lifetime, and stays.
// A lifetime of for ever removes the item's schedule.
func (k *Keeper) Schedule(ctx context.Context, cmd contract.Command, outcome contract.Outcome) (time.Time, error) {
	if !contract.Expires(cmd.Method) {
		return time.Time{}, nil
	}
	lifetime := k.Lifetime(cmd)
	var staged contract.StagedItem
	if outcome == contract.OutcomeStaged && lifetime > 0 {
		var err error
		if staged, err = k.describe(cmd.Username, cmd.RelativePath); err != nil {
			return time.Time{}, err
		}
	}
	// The item is staged: a schedule NATS cannot take now (a stream
	// leader lost) is tried again here, not by failing the staging, whose
	// next delivery would find the item already present and no schedule.
	for attempt := 1; ; attempt++ {
		due, err := k.schedule(ctx, cmd, outcome, lifetime, staged)
		if err == nil {
			return due, nil
		}
		k.Log.WarnContext(ctx, "expiry_schedule_retry", "request_id", cmd.ID, "attempt", attempt, "error", err)
		if werr := backoff.Wait(ctx, scheduleBackoff.Delay(attempt)); werr != nil {
			return time.Time{}, err
		}
	}
}

var scheduleBackoff = backoff.Exponential{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// schedule is one attempt of Schedule.
func (k *Keeper) schedule(ctx context.Context, cmd contract.Command, outcome contract.Outcome, lifetime time.Duration, staged contract.StagedItem) (time.Time, error) {
	key := contract.ExpiryKey(cmd.Username, cmd.RelativePath)
	for {
		current, seq, err := k.current(ctx, key)
		if err != nil {
			return time.Time{}, err
		}
		if lifetime == 0 || (outcome != contract.OutcomeStaged && current == nil) {
			if current != nil {
				if err := k.unschedule(ctx, key); err != nil {
					return time.Time{}, err
				}
			}
			return time.Time{}, nil
		}
		// Whole seconds, rounded up: the schedule's time has no more.
		due := time.Now().UTC().Add(lifetime).Truncate(time.Second).Add(time.Second)
		next := contract.Expiry{SpecVersion: contract.SpecVersion, Username: cmd.Username, RelativePath: cmd.RelativePath, ExpiresAt: due, RequestIDs: []string{cmd.ID}, Staged: staged}
		if outcome != contract.OutcomeStaged {
			next.Staged = current.Staged
			next.ExpiresAt = later(current.ExpiresAt, due)
			next.RequestIDs = addRequest(current.RequestIDs, cmd.ID)
		}
		err = k.publish(ctx, key, next, seq)
		if bus.IsWrongLastSequence(err) {
			// Another stager changed the schedule since the read.
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		return next.ExpiresAt, nil
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// addRequest adds id to ids once, dropping the oldest beyond the bound.
func addRequest(ids []string, id string) []string {
	if slices.Contains(ids, id) {
		return ids
	}
	ids = append(ids, id)
	return ids[max(0, len(ids)-contract.MaxExpiryRequests):]
}

// current is the item's schedule and its stream sequence; nil and 0 when
// it has none.
func (k *Keeper) current(ctx context.Context, key string) (*contract.Expiry, uint64, error) {
	// Bounded like a publish: the caller's deadline allows hours, and a
	// read of a stream whose leader died must fail and be retried.
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := k.streams.Stream(ctx, k.JS, contract.StreamExpiries)
	if err != nil {
		return nil, 0, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, contract.ExpiryScheduleSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the expiry schedule of %s: %w", key, err)
	}
	var e contract.Expiry
	if err := json.Unmarshal(raw.Data, &e); err != nil {
		return nil, 0, fmt.Errorf("decode the expiry schedule of %s: %w", key, err)
	}
	return &e, raw.Sequence, nil
}

// publish stores e as the item's schedule, on condition that the last
// message on its subject is still seq (0: none).
func (k *Keeper) publish(ctx context.Context, key string, e contract.Expiry, seq uint64) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode expiry schedule: %w", err)
	}
	msg := nats.NewMsg(contract.ExpiryScheduleSubject(key))
	msg.Header.Set("Nats-Schedule", "@at "+e.ExpiresAt.UTC().Format(time.RFC3339))
	msg.Header.Set("Nats-Schedule-Target", contract.ExpiryDueSubject(key))
	msg.Data = data
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	if _, err := k.JS.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(seq)); err != nil {
		return fmt.Errorf("publish expiry schedule: %w", err)
	}
	return nil
}

// unschedule removes the item's schedule.
func (k *Keeper) unschedule(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := k.streams.Stream(ctx, k.JS, contract.StreamExpiries)
	if err != nil {
		return err
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(contract.ExpiryScheduleSubject(key))); err != nil {
		return fmt.Errorf("remove the expiry schedule of %s: %w", key, err)
	}
	return nil
}

// describe tells what is at the target, to be recognised at expiry.
func (k *Keeper) describe(username, relativePath string) (contract.StagedItem, error) {
	name := path.Join(username, relativePath)
	fi, err := k.Users.Lstat(name)
	if err != nil {
		return contract.StagedItem{}, fmt.Errorf("describe the staged item: %w", err)
	}
	item := contract.StagedItem{Inode: inode(fi)}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		item.Type = "symlink"
		if item.LinkTarget, err = k.Users.Readlink(name); err != nil {
			return contract.StagedItem{}, fmt.Errorf("describe the staged link: %w", err)
		}
	case fi.IsDir():
		item.Type = "dir"
	default:
		item.Type, item.Size, item.ModTime = "file", fi.Size(), fi.ModTime().UnixNano()
	}
	return item, nil
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// Run consumes the due expiries until ctx is cancelled. One stager takes
// each; a failed removal comes back with the acknowledgement policy's
// back-off, for as long as it takes.
func (k *Keeper) Run(ctx context.Context) error {
	ackWait := k.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	consumer, err := bus.EnsureConsumer(ctx, k.JS, bus.ConsumerOptions{
		Stream:         contract.StreamExpiries,
		Durable:        contract.ConsumerExpiries,
		FilterSubjects: []string{contract.SubjectExpiriesDue},
		AckWait:        ackWait,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	policy := bus.AckPolicy{Log: k.Log, AckWait: ackWait}
	err = bus.Consume(ctx, consumer, 1, func(ctx context.Context, msg jetstream.Msg) {
		policy.Handle(ctx, msg, k.expire)
	})
	if err != nil {
		return fmt.Errorf("consume due expiries: %w", err)
	}
	return nil
}

// expire handles one due expiry: unless the item was staged again since
// (a schedule waits again), it removes the item when it is still what was
// staged, and publishes expired on each request that staged it and has
// succeeded. A delivery that comes again (its stager died) finds the item
// gone and the requests expired, and does nothing twice.
func (k *Keeper) expire(ctx context.Context, msg jetstream.Msg) error {
	var e contract.Expiry
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		return bus.Permanent(fmt.Errorf("decode due expiry: %w", err))
	}
	key := contract.ExpiryKey(e.Username, e.RelativePath)
	if next, _, err := k.current(ctx, key); err != nil {
		return err
	} else if next != nil && next.ExpiresAt.After(e.ExpiresAt) {
		// Staged again after the schedule fired. (The schedule that fired
		// may still be read for a moment, the same as e.)
		k.Log.InfoContext(ctx, "expiry_postponed", "username", e.Username, "relative_path", e.RelativePath, "expires_at", next.ExpiresAt)
		return nil
	}
	lasts, err := k.requests(ctx, e.RequestIDs)
	if err != nil {
		return err
	}
	message, err := k.remove(e)
	if err != nil {
		return err
	}
	for _, last := range lasts {
		ev := contract.Expired(last.ev, e.ExpiresAt)
		// The same id on every delivery of this expiry.
		ev.ID = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "expired/%s/%s", last.ev.RequestID, e.ExpiresAt.Format(time.RFC3339))).String()
		ev.Time, ev.Source, ev.Message = time.Now().UTC(), k.Source, message
		err := bus.PublishEvent(ctx, k.JS, ev, jetstream.WithExpectLastSequencePerSubject(last.seq))
		if err != nil && !bus.IsWrongLastSequence(err) {
			return fmt.Errorf("publish expired event: %w", err)
		}
	}
	k.Log.InfoContext(ctx, "item_expired", "username", e.Username, "relative_path", e.RelativePath, "requests", len(lasts), "message", message)
	return nil
}

type lastEvent struct {
	ev  contract.Event
	seq uint64
}

// requests are the last events of the requests ids that succeeded. One
// whose succeeded event is still to come (its worker scheduled, then
// publishes) makes the expiry wait.
func (k *Keeper) requests(ctx context.Context, ids []string) ([]lastEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := k.streams.Stream(ctx, k.JS, contract.StreamEvents)
	if err != nil {
		return nil, err
	}
	var lasts []lastEvent
	for _, id := range ids {
		raw, err := stream.GetLastMsgForSubject(ctx, contract.EventSubject(id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // aged out of the stream: the audit keeps its record
		}
		if err != nil {
			return nil, fmt.Errorf("read the last event of %s: %w", id, err)
		}
		var ev contract.Event
		if err := json.Unmarshal(raw.Data, &ev); err != nil {
			return nil, fmt.Errorf("decode the last event of %s: %w", id, err)
		}
		switch {
		case ev.Type == contract.EventSucceeded:
			lasts = append(lasts, lastEvent{ev, raw.Sequence})
		case !ev.Type.Terminal():
			return nil, fmt.Errorf("request %s is %s, not yet succeeded", id, ev.Type)
		}
	}
	return lasts, nil
}

// remove removes the item e describes when what is at its target is
// still that, and says what it did. Anything else is left where it is: a
// user may have replaced or changed the item since. A symlink and a hard
// link go as names only; their target, the source, stays.
func (k *Keeper) remove(e contract.Expiry) (string, error) {
	name := path.Join(e.Username, e.RelativePath)
	now, err := k.describe(e.Username, e.RelativePath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%s was gone already when its lifetime ended", e.RelativePath), nil
	}
	if err != nil {
		return "", err
	}
	if now != e.Staged {
		return fmt.Sprintf("%s was left in place: it is not what was staged (%s), it changed since", e.RelativePath, describe(e.Staged)), nil
	}
	if now.Type == "dir" {
		err = k.Users.RemoveAll(name)
	} else {
		err = k.Users.Remove(name)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("remove expired item: %w", err)
	}
	return fmt.Sprintf("removed %s: its lifetime ended", e.RelativePath), nil
}

func describe(s contract.StagedItem) string {
	switch s.Type {
	case "file":
		return fmt.Sprintf("a file of %d bytes", s.Size)
	case "symlink":
		return "a link to " + s.LinkTarget
	default:
		return "a directory"
	}
}
