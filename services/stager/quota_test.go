package stager_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager"
)

// A local_copy that would take a user over their quota fails before
// anything is copied, naming the usage, the size and the quota; a user
// with an override from the quota file holds more; removing an item gives
// its space back, as does one that expires; links take no room.
func TestUserQuota(t *testing.T) {
	quotas := filepath.Join(t.TempDir(), "quotas")
	if err := os.WriteFile(quotas, []byte("# site overrides\nbob 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startStager(t, func(c *stager.Config) { c.UserQuota, c.UserQuotaFile = 100, quotas })
	data := strings.Repeat("x", 60)
	writeFile(t, filepath.Join(s.storage, "a.ms"), data)
	writeFile(t, filepath.Join(s.storage, "b.ms"), data)

	s.stageWithLifetime(t, contract.MethodLocalCopy, "a.ms", "a.ms", 0)
	over := s.stageOutcome(t, "alice", contract.MethodLocalCopy, "b.ms", "b.ms")
	if over.Type != contract.EventFailed || over.Error.Code != contract.CodeQuotaExceeded {
		t.Fatalf("a copy over the quota ended %s (%+v), want failed with quota_exceeded", over.Type, over.Error)
	}
	for _, want := range []string{"uses 60 bytes", "needs 60 more", "quota of 100 bytes"} {
		if !strings.Contains(over.Error.Detail, want) {
			t.Errorf("detail %q does not say %q", over.Error.Detail, want)
		}
	}
	if left := entries(t, filepath.Join(s.userArea, "alice")); len(left) != 1 {
		t.Errorf("user area after the refusal: %v, want only a.ms", left)
	}
	if ok := s.stageOutcome(t, "alice", contract.MethodLocalSymlink, "b.ms", "b-link.ms"); ok.Type != contract.EventSucceeded {
		t.Errorf("a link over the quota ended %s (%+v), want succeeded: it takes no room", ok.Type, ok.Error)
	}
	for _, target := range []string{"a.ms", "b.ms"} {
		if ok := s.stageOutcome(t, "bob", contract.MethodLocalCopy, "a.ms", target); ok.Type != contract.EventSucceeded {
			t.Errorf("bob, with a quota of 1000 bytes, ended %s (%+v)", ok.Type, ok.Error)
		}
	}

	a := filepath.Join(s.userArea, "alice", "a.ms")
	makeRemovable(t, filepath.Dir(a))
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if ok := s.stageOutcome(t, "alice", contract.MethodLocalCopy, "b.ms", "b.ms"); ok.Type != contract.EventSucceeded {
		t.Errorf("after a.ms was removed, b.ms ended %s (%+v), want succeeded", ok.Type, ok.Error)
	}

	// An item that expires gives its space back too.
	if err := os.Remove(filepath.Join(s.userArea, "alice", "b.ms")); err != nil {
		t.Fatal(err)
	}
	expiring := s.stageWithLifetime(t, contract.MethodLocalCopy, "a.ms", "later/a.ms", 1)
	copyLater := func() contract.Event {
		return s.stageOutcome(t, "alice", contract.MethodLocalCopy, "a.ms", "later/b.ms")
	}
	if ev := copyLater(); ev.Type != contract.EventFailed || ev.Error.Code != contract.CodeQuotaExceeded {
		t.Fatalf("a copy over the quota ended %s (%+v), want quota_exceeded", ev.Type, ev.Error)
	}
	s.awaitLast(t, expiring.RequestID, contract.EventExpired)
	if ev := copyLater(); ev.Type != contract.EventSucceeded {
		t.Errorf("after the item expired, the copy ended %s (%+v), want succeeded", ev.Type, ev.Error)
	}
}

// stageOutcome publishes a command for username and returns its terminal
// event.
func (s *system) stageOutcome(t *testing.T, username string, m contract.Method, source, target string) contract.Event {
	t.Helper()
	cmd := contract.Command{
		SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: m, Username: username,
		LocalPathOnStorage: source, RelativePath: target, RequestedAt: time.Now().UTC(),
	}
	if err := bus.PublishCommand(t.Context(), s.js, cmd); err != nil {
		t.Fatal(err)
	}
	evs := s.events(t, contract.EventSubject(cmd.ID))
	return evs[len(evs)-1]
}
