package contract_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
)

// Every message under testdata/invalid breaks one event rule: its schema
// refuses it, and so does the Go validation the audit applies. Go and the
// schema so agree on what an invalid event is.
func TestInvalidEventsRefusedBySchemaAndGo(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.json")
	if err != nil || len(files) < 30 {
		t.Fatalf("found %d invalid golden messages (%v), want the whole set", len(files), err)
	}
	eventSchema := contracttest.Schema(t, contracttest.Event)
	downloadSchema := contracttest.Schema(t, contracttest.Download)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			var requestID struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(data, &requestID); err != nil {
				t.Fatal(err)
			}
			schema := eventSchema
			var goErr error
			if strings.HasPrefix(filepath.Base(f), "download") {
				schema = downloadSchema
				_, goErr = contract.DecodeDownloadEvent(contract.DownloadSubject(requestID.RequestID), data)
			} else {
				_, goErr = contract.DecodeEvent(contract.EventSubject(requestID.RequestID), data)
			}
			if err := schema.Validate(doc); err == nil {
				t.Error("the schema accepts it")
			}
			if goErr == nil {
				t.Error("Go validation accepts it")
			} else if contract.CodeOf(goErr) == contract.CodeInternal {
				t.Errorf("Go validation: %v, want a contract code", goErr)
			}
		})
	}
}

func validEvent() contract.Event {
	ev := contract.EventFor(validCommand(), contract.EventStarted)
	ev.ID, ev.Time, ev.Source, ev.Attempt = "e1", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), "stager", 1
	return ev
}

func TestEventValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*contract.Event)
		want   contract.Code // "" means valid
	}{
		{"valid", func(*contract.Event) {}, ""},
		{"minor spec version", func(e *contract.Event) { e.SpecVersion = "1.7" }, ""},
		{"spec version with a patch", func(e *contract.Event) { e.SpecVersion = "1.0.1" }, contract.CodeUnsupported},
		{"unknown type", func(e *contract.Event) { e.Type = "weird" }, contract.CodeUnknownEventType},
		{"download type", func(e *contract.Event) { e.Type = "download_started" }, contract.CodeUnknownEventType},
		{"cancelled", func(e *contract.Event) {
			e.Type, e.CancelledBy, e.Error = contract.EventCancelled, "alice", contract.Errorf(contract.CodeCancelled, "cancelled by alice")
		}, ""},
		{"cancelled without who", func(e *contract.Event) {
			e.Type, e.Error = contract.EventCancelled, contract.Errorf(contract.CodeCancelled, "cancelled")
		}, contract.CodeMissingField},
		{"cancelled_by on another type", func(e *contract.Event) { e.CancelledBy = "alice" }, contract.CodeMalformed},
		{"job size", func(e *contract.Event) { e.JobSize = 3 }, ""},
		{"negative job size", func(e *contract.Event) { e.JobSize = -1 }, contract.CodeMalformed},
		{"no type", func(e *contract.Event) { e.Type = "" }, contract.CodeMissingField},
		{"no time", func(e *contract.Event) { e.Time = time.Time{} }, contract.CodeMissingField},
		{"before 1970", func(e *contract.Event) { e.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }, contract.CodeMalformed},
		{"year 10000", func(e *contract.Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, contract.CodeMalformed},
		{"first instant of 1970", func(e *contract.Event) { e.Time = time.Unix(0, 0) }, ""},
		{"id of 128 characters", func(e *contract.Event) { e.ID = strings.Repeat("é", 128) }, ""},
		{"id of 129 characters", func(e *contract.Event) { e.ID = strings.Repeat("e", 129) }, contract.CodeInvalidID},
		{"bad request id", func(e *contract.Event) { e.RequestID = "a.>" }, contract.CodeInvalidID},
		{"bytes -5", func(e *contract.Event) { e.Bytes = -5 }, contract.CodeMalformed},
		{"username of 5000 characters", func(e *contract.Event) { e.Username = strings.Repeat("a", 5000) }, contract.CodeInvalidUsername},
		{"source path climbs", func(e *contract.Event) { e.LocalPathOnStorage = "/mnt/a/../../etc/shadow" }, contract.CodeOutsideStorage},
		{"absolute source path", func(e *contract.Event) { e.LocalPathOnStorage = "/etc/shadow" }, ""},
		{"target absolute", func(e *contract.Event) { e.RelativePath = "/etc/shadow" }, contract.CodeOutsideUserArea},
		{"unknown method", func(e *contract.Event) { e.Method = contract.Method(strings.Repeat("m", 100)) }, contract.CodeInvalidMethod},
		{"long origin", func(e *contract.Event) { e.Origin = strings.Repeat("o", 129) }, contract.CodeMalformed},
		{"long message", func(e *contract.Event) { e.Message = strings.Repeat("m", 65537) }, contract.CodeMalformed},
		{"error code shape", func(e *contract.Event) {
			e.Type, e.Error = contract.EventFailed, &contract.Error{Code: "IO-Error", Detail: "x"}
		}, contract.CodeMalformed},
		{"error code unknown to this version", func(e *contract.Event) {
			e.Type, e.Error = contract.EventFailed, &contract.Error{Code: "quota_exceeded", Detail: "x"}
		}, ""},
		{"rejected repeats refused fields", func(e *contract.Event) {
			e.Type, e.Error = contract.EventRejected, contract.Errorf(contract.CodeInvalidPath, "bad")
			e.Username, e.Method, e.JobID, e.RelativePath = "Bad.User", "scp", "a b", "../../x\x00"
		}, ""},
		{"rejected repeats a field longer than its bound", func(e *contract.Event) {
			e.Type, e.Error = contract.EventRejected, contract.Errorf(contract.CodeInvalidUsername, "too long")
			e.Username = strings.Repeat("a", 65)
		}, contract.CodeInvalidUsername},
		{"resolved", func(e *contract.Event) { resolvedEvent(e) }, ""},
		{"resolved of a DID without files", func(e *contract.Event) {
			resolvedEvent(e)
			e.Resolved.Files, e.Resolved.Bytes, e.Resolved.Paths = 0, 0, []string{}
		}, ""},
		{"resolved without resolved", func(e *contract.Event) { resolvedEvent(e); e.Resolved = nil }, contract.CodeMissingField},
		{"resolved without did", func(e *contract.Event) { resolvedEvent(e); e.DID = "" }, contract.CodeMissingField},
		{"resolved without paths", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Paths = nil }, contract.CodeMissingField},
		{"resolved on a progress event", func(e *contract.Event) {
			resolvedEvent(e)
			e.Type, e.Progress = contract.EventProgress, &contract.Progress{}
		}, contract.CodeMalformed},
		{"resolved part 0", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Part = 0 }, contract.CodeMalformed},
		{"resolved part after the last", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Part = 3 }, contract.CodeMalformed},
		{"resolved negative bytes", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Bytes = -1 }, contract.CodeMalformed},
		{"resolved more paths than files", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Files = 1 }, contract.CodeMalformed},
		{"resolved 1001 paths", func(e *contract.Event) {
			resolvedEvent(e)
			e.Resolved.Paths = make([]string, 1001)
			for i := range e.Resolved.Paths {
				e.Resolved.Paths[i] = fmt.Sprintf("testsrc/f%d", i)
			}
			e.Resolved.Files = 1001
		}, contract.CodeMalformed},
		{"resolved absolute path", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Paths[0] = "/etc/shadow" }, contract.CodeInvalidPath},
		{"resolved path climbs", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Paths[0] = "a/../../x" }, contract.CodeOutsideStorage},
		{"resolved empty path", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Paths[0] = "" }, contract.CodeMissingField},
		{"resolved path with NUL", func(e *contract.Event) { resolvedEvent(e); e.Resolved.Paths[0] = "a\x00b" }, contract.CodeInvalidPath},
		{"failed without anything of the command", func(e *contract.Event) {
			e.Type, e.Error = contract.EventFailed, contract.Errorf(contract.CodeRetriesExhausted, "gave up")
			e.Method, e.Username, e.LocalPathOnStorage, e.RelativePath, e.JobID = "", "", "", "", ""
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := validEvent()
			tt.change(&ev)
			err := ev.Validate()
			wantCode(t, err, tt.want)
		})
	}
}

// resolvedEvent makes e the resolved event of part 1 of 2 of a DID of 3
// files.
func resolvedEvent(e *contract.Event) {
	e.Type, e.LocalPathOnStorage, e.DID = contract.EventResolved, "", "testsrc:ds1"
	e.Resolved = &contract.Resolved{Files: 3, Bytes: 50, Part: 1, Parts: 2, Paths: []string{"testsrc/a/file1", "testsrc/b/x"}}
}

// A resolution is split into parts of at most MaxResolvedPaths paths and
// MaxResolvedPathsSize bytes of JSON, in order, each with the totals; every
// event made of one is valid and within the event size.
func TestResolvedParts(t *testing.T) {
	long := strings.Repeat("d/", 2000) + "f" // 4001 bytes
	tests := []struct {
		name  string
		paths []string
		sizes []int // paths per part
	}{
		{"no files", nil, []int{0}},
		{"one file", []string{"a"}, []int{1}},
		{"1000 files", names(1000, "f"), []int{1000}},
		{"1001 files", names(1001, "f"), []int{1000, 1}},
		{"10000 files", names(10000, "testsrc/aa/bb/file"), slices.Repeat([]int{1000}, 10)},
		{"long paths", slices.Repeat([]string{long}, 100), []int{32, 32, 32, 4}},
		{"paths escaped in JSON", slices.Repeat([]string{strings.Repeat("<", 4000)}, 10), []int{5, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := contract.ResolvedParts(tt.paths, 1234)
			var sizes []int
			var all []string
			for i, p := range parts {
				sizes = append(sizes, len(p.Paths))
				all = append(all, p.Paths...)
				if p.Files != int64(len(tt.paths)) || p.Bytes != 1234 || p.Part != i+1 || p.Parts != len(parts) {
					t.Errorf("part %d: files %d, bytes %d, part %d of %d", i, p.Files, p.Bytes, p.Part, p.Parts)
				}
				ev := validEvent()
				resolvedEvent(&ev)
				ev.Resolved = &p
				data := mustJSON(t, ev)
				if len(data) > contract.MaxEventSize/2+4096 {
					t.Errorf("part %d: event of %d bytes", i, len(data))
				}
				if _, err := contract.DecodeEvent(contract.EventSubject(ev.RequestID), data); err != nil {
					t.Errorf("part %d: %v", i, err)
				}
			}
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("paths per part = %v, want %v", sizes, tt.sizes)
			}
			if !slices.Equal(all, tt.paths) {
				t.Error("the parts' paths are not the paths in order")
			}
		})
	}
}

func names(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return out
}

func TestEventSubjectMustNameTheRequest(t *testing.T) {
	ev := validEvent()
	if err := ev.CheckSubject(contract.EventSubject(ev.RequestID)); err != nil {
		t.Errorf("own subject: %v", err)
	}
	for _, subject := range []string{contract.EventSubject("another"), contract.DownloadSubject(ev.RequestID), contract.EventSubject(ev.RequestID) + ".x"} {
		if got := contract.CodeOf(ev.CheckSubject(subject)); got != contract.CodeSubjectMismatch {
			t.Errorf("CheckSubject(%s) code = %q, want %q", subject, got, contract.CodeSubjectMismatch)
		}
	}
	dl := contract.DownloadEvent{RequestID: ev.RequestID}
	if err := dl.CheckSubject(contract.DownloadSubject(ev.RequestID)); err != nil {
		t.Errorf("download on its own subject: %v", err)
	}
	if got := contract.CodeOf(dl.CheckSubject(contract.EventSubject(ev.RequestID))); got != contract.CodeSubjectMismatch {
		t.Errorf("download on the request's event subject: code %q, want %q", got, contract.CodeSubjectMismatch)
	}
}

// A rejected event repeats the refused command, cut to the event bounds,
// so that the rejection itself is valid and recorded.
func TestEventForCutsRefusedInput(t *testing.T) {
	schema := contracttest.Schema(t, contracttest.Event)
	cmd := validCommand()
	cmd.Username = strings.Repeat("ü", 5000)
	cmd.Method = contract.Method(strings.Repeat("m", 500))
	cmd.JobID = strings.Repeat("j", 500)
	cmd.RelativePath = strings.Repeat("r", 5000)
	cmd.Origin = strings.Repeat("o", 500)
	cmd.ExpectedAdler32 = "not-hex"
	_, cause := contract.DecodeCommand(mustJSON(t, cmd))
	if cause == nil {
		t.Fatal("the command is valid")
	}
	ev := contract.EventFor(cmd, contract.EventRejected)
	ev.ID, ev.Time, ev.Source, ev.Error = "e1", time.Now(), "stager", contract.AsError(cause)
	if err := ev.Validate(); err != nil {
		t.Errorf("rejected event: %v", err)
	}
	contracttest.Check(t, schema, mustJSON(t, ev))
	if !strings.HasPrefix(cmd.Username, ev.Username) || ev.Username == "" {
		t.Errorf("username %q is not the start of the refused one", ev.Username)
	}
	// A valid command is repeated whole.
	if got := contract.EventFor(validCommand(), contract.EventStarted); got.Username != validCommand().Username || got.LocalPathOnStorage != validCommand().LocalPathOnStorage || got.ExpectedAdler32 != validCommand().ExpectedAdler32 {
		t.Errorf("EventFor changed a valid command's fields: %+v", got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
