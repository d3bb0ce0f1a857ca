package stager_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// An item staged with a lifetime says when it expires; when that passes,
// the stager removes it from the user's area (the copy, the link, the
// hard link; never the source) and the request ends expired.
func TestStagedItemExpires(t *testing.T) {
	s := startStager(t, nil)
	writeFile(t, filepath.Join(s.storage, "vis.ms"), "visibilities")
	writeFile(t, filepath.Join(s.storage, "obs/a.ms"), "a")
	writeFile(t, filepath.Join(s.storage, "obs/sub/b.ms"), "b")
	for _, tt := range []struct {
		method contract.Method
		source string
	}{
		{contract.MethodLocalCopy, "vis.ms"},
		{contract.MethodLocalCopy, "obs"},
		{contract.MethodLocalSymlink, "vis.ms"},
		{contract.MethodLocalHardlink, "vis.ms"},
	} {
		t.Run(string(tt.method)+"/"+tt.source, func(t *testing.T) {
			target := string(tt.method) + "/" + tt.source
			ok := s.stageWithLifetime(t, tt.method, tt.source, target, 1)
			if ok.Type != contract.EventSucceeded || ok.ExpiresAt == nil {
				t.Fatalf("last event %s, expires_at %v; want succeeded with expires_at", ok.Type, ok.ExpiresAt)
			}
			if until := time.Until(*ok.ExpiresAt); until <= 0 || until > 3*time.Second {
				t.Errorf("expires_at %s is %s away, want about a second", ok.ExpiresAt, until)
			}
			expired := s.awaitLast(t, ok.RequestID, contract.EventExpired)
			if !expired.ExpiresAt.Equal(*ok.ExpiresAt) || expired.Time.Before(*ok.ExpiresAt) {
				t.Errorf("expired at %s, due %s; want due %s, not before", expired.Time, expired.ExpiresAt, ok.ExpiresAt)
			}
			if err := expired.Validate(); err != nil {
				t.Errorf("the expired event is invalid: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(s.userArea, "alice", target)); !os.IsNotExist(err) {
				t.Errorf("the staged item is still there (%v)", err)
			}
			if _, err := os.Stat(filepath.Join(s.storage, tt.source)); err != nil {
				t.Errorf("the source is gone: %v", err)
			}
		})
	}
}

// A user who replaced the staged item meanwhile keeps it: only what the
// stager left is removed, and the expired event says what was left.
func TestExpiryLeavesAChangedItem(t *testing.T) {
	s := startStager(t, func(c *stager.Config) { c.DefaultLifetime = 2 * time.Second })
	writeFile(t, filepath.Join(s.storage, "vis.ms"), "visibilities")
	ok := s.stageWithLifetime(t, contract.MethodLocalCopy, "vis.ms", "mine.ms", 0)
	if ok.ExpiresAt == nil {
		t.Fatal("no expires_at with a default lifetime")
	}
	target := filepath.Join(s.userArea, "alice", "mine.ms")
	makeRemovable(t, filepath.Dir(target))
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	writeFile(t, target, "the user's own work")
	expired := s.awaitLast(t, ok.RequestID, contract.EventExpired)
	if !strings.Contains(expired.Message, "left in place") {
		t.Errorf("expired message %q, want it to say the item was left", expired.Message)
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != "the user's own work" {
		t.Errorf("the user's file reads %q, %v; want it untouched", data, err)
	}
}

// Staging the same item again with a later expiry extends it: the item
// stays until the later time, then both requests end expired.
func TestStagingAgainExtendsTheLifetime(t *testing.T) {
	s := startStager(t, nil)
	writeFile(t, filepath.Join(s.storage, "vis.ms"), "visibilities")
	first := s.stageWithLifetime(t, contract.MethodLocalCopy, "vis.ms", "vis.ms", 1)
	again := s.stageWithLifetime(t, contract.MethodLocalCopy, "vis.ms", "vis.ms", 3)
	if again.Outcome != contract.OutcomeAlreadyPresent || again.ExpiresAt == nil || !again.ExpiresAt.After(*first.ExpiresAt) {
		t.Fatalf("again: %s, expires_at %v; want already_present, expiring after %s", again.Outcome, again.ExpiresAt, first.ExpiresAt)
	}
	for _, id := range []string{first.RequestID, again.RequestID} {
		expired := s.awaitLast(t, id, contract.EventExpired)
		if expired.Time.Before(*again.ExpiresAt) || !expired.ExpiresAt.Equal(*again.ExpiresAt) {
			t.Errorf("%s expired at %s (due %s), want at the later expiry %s", id, expired.Time, expired.ExpiresAt, again.ExpiresAt)
		}
	}
	if _, err := os.Lstat(filepath.Join(s.userArea, "alice", "vis.ms")); !os.IsNotExist(err) {
		t.Errorf("the staged item is still there (%v)", err)
	}
}

// The site's maximum caps a longer lifetime, and a download link's own
// expiry is shown.
func TestLifetimeCappedAndLinkExpiry(t *testing.T) {
	s := startStager(t, func(c *stager.Config) { c.MaxLifetime = time.Hour })
	writeFile(t, filepath.Join(s.storage, "vis.ms"), "visibilities")
	ok := s.stageWithLifetime(t, contract.MethodLocalSymlink, "vis.ms", "vis.ms", 7*24*3600)
	if ok.ExpiresAt == nil || time.Until(*ok.ExpiresAt) > time.Hour+2*time.Second {
		t.Errorf("expires_at %v, want within the hour of the site's maximum", ok.ExpiresAt)
	}
	link := s.stageWithLifetime(t, contract.MethodDirectDownload, "vis.ms", "vis.ms", 0)
	if link.ExpiresAt == nil || time.Until(*link.ExpiresAt) <= 59*time.Minute {
		t.Errorf("download link expires_at %v, want about the hour of the link's TTL", link.ExpiresAt)
	}
}

// stageWithLifetime publishes a command for alice and returns its
// terminal event.
func (s *system) stageWithLifetime(t *testing.T, m contract.Method, source, target string, lifetime int64) contract.Event {
	t.Helper()
	cmd := contract.Command{
		SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: m, Username: "alice",
		LocalPathOnStorage: source, RelativePath: target, Lifetime: lifetime, RequestedAt: time.Now().UTC(),
	}
	if err := bus.PublishCommand(t.Context(), s.js, cmd); err != nil {
		t.Fatal(err)
	}
	evs := s.events(t, contract.EventSubject(cmd.ID))
	last := evs[len(evs)-1]
	if last.Type != contract.EventSucceeded {
		t.Fatalf("staging %s ended %s: %+v", source, last.Type, last.Error)
	}
	return last
}

// awaitLast waits for the last event of request id to be of type want.
func (s *system) awaitLast(t *testing.T, id string, want contract.EventType) contract.Event {
	t.Helper()
	stream, err := s.js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var last contract.Event
	testenv.Eventually(t, 15*time.Second, "the request to be "+string(want), func() bool {
		raw, err := stream.GetLastMsgForSubject(context.Background(), contract.EventSubject(id))
		if err != nil {
			return false
		}
		return json.Unmarshal(raw.Data, &last) == nil && last.Type == want
	}, func() string { return string(last.Type) + ": " + last.Message })
	return last
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
