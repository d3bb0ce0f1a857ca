package stager_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// A file at the target of another size than the source is evidently not
// the source: a copy or a hard link onto it fails with target_conflict and
// leaves it; the same source again is already present. Through the seed's
// /stage_data the seed's success stands, with a message that says so.
func TestTargetOfAnotherSize(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "obs/x.fits", "hello, sky")
	s.write(t, "obs/other.fits", "another, larger file")
	for _, m := range []contract.Method{contract.MethodLocalCopy, contract.MethodLocalHardlink} {
		t.Run(string(m), func(t *testing.T) {
			rel := "data/" + string(m) + ".fits"
			s.events(t, contract.EventSubject(s.submit(t, m, "obs/x.fits", rel)))

			evs := s.events(t, contract.EventSubject(s.submit(t, m, "obs/other.fits", rel)))
			last := evs[len(evs)-1]
			if last.Type != contract.EventFailed || last.Error.Code != contract.CodeTargetConflict {
				t.Errorf("another source onto the target: %s %+v, want failed target_conflict", last.Type, last.Error)
			}
			evs = s.events(t, contract.EventSubject(s.submit(t, m, "obs/x.fits", rel)))
			if last := evs[len(evs)-1]; last.Outcome != contract.OutcomeAlreadyPresent {
				t.Errorf("the same source again: %s %s, want already_present", last.Type, last.Outcome)
			}

			cmd := contract.Command{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: m, Username: "alice",
				LocalPathOnStorage: "obs/other.fits", RelativePath: rel, Origin: contract.OriginStageData, RequestedAt: time.Now().UTC()}
			if err := bus.PublishCommand(context.Background(), s.js, cmd); err != nil {
				t.Fatal(err)
			}
			evs = s.events(t, contract.EventSubject(cmd.ID))
			want := "alice/" + rel + " already exists and differs from the source: it holds 10 bytes, the source 20 bytes; nothing was changed"
			if last := evs[len(evs)-1]; last.Outcome != contract.OutcomeAlreadyPresent || last.Message != want {
				t.Errorf("through /stage_data: %s %s %q, want already_present saying %q", last.Type, last.Outcome, last.Message, want)
			}
			got, err := os.ReadFile(filepath.Join(s.userArea, "alice", rel))
			if err != nil || string(got) != "hello, sky" {
				t.Errorf("the target holds %q (%v), want it unchanged", got, err)
			}
		})
	}
}
