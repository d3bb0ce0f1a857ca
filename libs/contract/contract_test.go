package contract_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
)

// Every golden message must satisfy its schema and survive a round trip
// through the Go type without losing or changing a field.
func TestGoldenMessages(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	commandSchema := contracttest.Schema(t, contracttest.Command)
	eventSchema := contracttest.Schema(t, contracttest.Event)
	downloadSchema := contracttest.Schema(t, contracttest.Download)
	cancelSchema := contracttest.Schema(t, contracttest.Cancel)
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
			var typed any
			schema := eventSchema
			switch name := filepath.Base(f); {
			case strings.HasPrefix(name, "command"):
				schema = commandSchema
				cmd, err := contract.DecodeCommand(data)
				if err != nil {
					t.Fatalf("golden command does not validate: %v", err)
				}
				typed = cmd
			case strings.HasPrefix(name, "cancel"):
				schema = cancelSchema
				var c contract.CancelRequest
				if err := json.Unmarshal(data, &c); err != nil {
					t.Fatal(err)
				}
				if _, err := contract.DecodeCancelRequest(contract.CancelSubject(c.RequestID), data); err != nil {
					t.Errorf("golden cancel request does not validate: %v", err)
				}
				typed = c
			case strings.HasPrefix(name, "download"):
				schema = downloadSchema
				var ev contract.DownloadEvent
				if err := json.Unmarshal(data, &ev); err != nil {
					t.Fatal(err)
				}
				if _, err := contract.DecodeDownloadEvent(contract.DownloadSubject(ev.RequestID), data); err != nil {
					t.Errorf("golden download event does not validate: %v", err)
				}
				typed = ev
			default:
				var ev contract.Event
				if err := json.Unmarshal(data, &ev); err != nil {
					t.Fatal(err)
				}
				if _, err := contract.DecodeEvent(contract.EventSubject(ev.RequestID), data); err != nil {
					t.Errorf("golden event does not validate: %v", err)
				}
				typed = ev
			}
			if err := schema.Validate(doc); err != nil {
				t.Fatalf("golden file does not match its schema: %v", err)
			}
			again, err := json.Marshal(typed)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip changed the message (-golden +got):\n%s", diff)
			}
		})
	}
}

// A download event must not pass as a request event, nor the other way
// round: the two schemas keep their types apart.
func TestDownloadAndRequestEventsDoNotMix(t *testing.T) {
	eventSchema := contracttest.Schema(t, contracttest.Event)
	downloadSchema := contracttest.Schema(t, contracttest.Download)
	for _, tt := range []struct {
		file   string
		schema *jsonschema.Schema
	}{
		{"testdata/download_completed.json", eventSchema},
		{"testdata/event_succeeded.json", downloadSchema},
	} {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := tt.schema.Validate(doc); err == nil {
			t.Errorf("%s passes the other kind's schema", tt.file)
		}
	}
	if !contract.IsDownloadSubject(contract.DownloadSubject("r1")) || contract.IsDownloadSubject(contract.EventSubject("r1")) {
		t.Error("IsDownloadSubject does not tell the subjects apart")
	}
}

// An event built by EventFor and filled like the workers fill it must
// satisfy the schema, so what the services publish is what docs promise.
func TestEventForMatchesSchema(t *testing.T) {
	schema := contracttest.Schema(t, contracttest.Event)
	data, err := os.ReadFile("testdata/command.json")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := contract.DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	cmd.JupyterToken = "secret-token-value"
	ev := contract.EventFor(cmd, contract.EventFailed)
	ev.ID, ev.Source, ev.Time = "e1", "stager", cmd.RequestedAt
	ev.Error = contract.Errorf(contract.CodeSourceNotFound, "gone")
	raw, _ := json.Marshal(ev)
	if bytes.Contains(raw, []byte(cmd.JupyterToken)) {
		t.Errorf("the command's jupyter_token reached the event: %s", raw)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("event from EventFor does not match the schema: %v\n%s", err, raw)
	}
}

func validCommand() contract.Command {
	return contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 "0b9a3c1e-5d4f-4c2a-9e8b-7f6a5d4c3b2a",
		Method:             contract.MethodLocalCopy,
		Username:           "alice",
		LocalPathOnStorage: "/mnt/storage_a/file.fits",
		RelativePath:       "data/file.fits",
	}
}

func TestCommandValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*contract.Command)
		want   contract.Code // "" means valid
	}{
		{"valid", func(*contract.Command) {}, ""},
		{"relative source", func(c *contract.Command) { c.LocalPathOnStorage = "file.fits" }, ""},
		{"minor spec version", func(c *contract.Command) { c.SpecVersion = "1.3" }, ""},
		{"missing spec version", func(c *contract.Command) { c.SpecVersion = "" }, contract.CodeMissingField},
		{"future spec version", func(c *contract.Command) { c.SpecVersion = "2.0" }, contract.CodeUnsupported},
		{"missing id", func(c *contract.Command) { c.ID = "" }, contract.CodeMissingField},
		{"id with dot", func(c *contract.Command) { c.ID = "a.b" }, contract.CodeInvalidID},
		{"job size", func(c *contract.Command) { c.JobID, c.JobSize = "job-1", 3 }, ""},
		{"job size without a job", func(c *contract.Command) { c.JobID, c.JobSize = "", 3 }, contract.CodeMalformed},
		{"negative job size", func(c *contract.Command) { c.JobID, c.JobSize = "job-1", -1 }, contract.CodeMalformed},
		{"id with wildcard", func(c *contract.Command) { c.ID = ">" }, contract.CodeInvalidID},
		{"id too long", func(c *contract.Command) { c.ID = strings.Repeat("a", 65) }, contract.CodeInvalidID},
		{"job id with space", func(c *contract.Command) { c.JobID = "a b" }, contract.CodeInvalidID},
		{"missing method", func(c *contract.Command) { c.Method = "" }, contract.CodeMissingField},
		{"unknown method", func(c *contract.Command) { c.Method = "scp" }, contract.CodeInvalidMethod},
		{"seed's symlink_copy", func(c *contract.Command) { c.Method = "symlink_copy" }, contract.CodeInvalidMethod},
		{"missing username", func(c *contract.Command) { c.Username = "" }, contract.CodeMissingField},
		{"username with slash", func(c *contract.Command) { c.Username = "../root" }, contract.CodeInvalidUsername},
		{"username with dot", func(c *contract.Command) { c.Username = "a.b" }, contract.CodeInvalidUsername},
		{"username upper case", func(c *contract.Command) { c.Username = "Alice" }, contract.CodeInvalidUsername},
		{"username leading dash", func(c *contract.Command) { c.Username = "-rf" }, contract.CodeInvalidUsername},
		{"username wildcard", func(c *contract.Command) { c.Username = "*" }, contract.CodeInvalidUsername},
		{"username too long", func(c *contract.Command) { c.Username = strings.Repeat("a", 33) }, contract.CodeInvalidUsername},
		{"username longest", func(c *contract.Command) { c.Username = strings.Repeat("a", 32) }, ""},
		{"missing source", func(c *contract.Command) { c.LocalPathOnStorage = "" }, contract.CodeMissingField},
		{"source climbs", func(c *contract.Command) { c.LocalPathOnStorage = "/mnt/storage_a/../etc/passwd" }, contract.CodeOutsideStorage},
		{"source NUL", func(c *contract.Command) { c.LocalPathOnStorage = "a\x00b" }, contract.CodeInvalidPath},
		{"source not UTF-8", func(c *contract.Command) { c.LocalPathOnStorage = "a\xffb" }, contract.CodeInvalidPath},
		{"source too long", func(c *contract.Command) { c.LocalPathOnStorage = strings.Repeat("a", 4097) }, contract.CodeInvalidPath},
		{"did", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "testsrc:ds1" }, ""},
		{"did with slashes in its name", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "user.jdoe:dir/x.fits" }, ""},
		{"did and expected checksum", func(c *contract.Command) {
			c.LocalPathOnStorage, c.DID, c.ExpectedAdler32 = "", "testsrc:ds1", "0a1b2c3d"
		}, contract.CodeMalformed},
		{"did and path", func(c *contract.Command) { c.DID = "testsrc:ds1" }, contract.CodeMalformed},
		{"did without scope", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "ds1" }, contract.CodeInvalidDID},
		{"did with empty name", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "testsrc:" }, contract.CodeInvalidDID},
		{"did scope too long", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", strings.Repeat("s", 26)+":x" }, contract.CodeInvalidDID},
		{"did scope with slash", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "a/b:x" }, contract.CodeInvalidDID},
		{"did name too long", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "s:"+strings.Repeat("n", 251) }, contract.CodeInvalidDID},
		{"did name with control", func(c *contract.Command) { c.LocalPathOnStorage, c.DID = "", "s:a\nb" }, contract.CodeInvalidDID},
		{"missing target", func(c *contract.Command) { c.RelativePath = "" }, contract.CodeMissingField},
		{"absolute target", func(c *contract.Command) { c.RelativePath = "/etc/passwd" }, contract.CodeOutsideUserArea},
		{"target climbs", func(c *contract.Command) { c.RelativePath = "a/../../bob/x" }, contract.CodeOutsideUserArea},
		{"target is the area", func(c *contract.Command) { c.RelativePath = "./" }, contract.CodeInvalidPath},
		{"target backslash", func(c *contract.Command) { c.RelativePath = `..\x` }, contract.CodeInvalidPath},
		{"bad checksum", func(c *contract.Command) { c.ExpectedAdler32 = "xyz" }, contract.CodeMalformed},
		{"jupyter token", func(c *contract.Command) { c.Method, c.JupyterToken = contract.MethodJupyterCopy, "0123456789abcdef" }, ""},
		{"jupyter token too short", func(c *contract.Command) { c.Method, c.JupyterToken = contract.MethodJupyterCopy, "abc" }, contract.CodeMalformed},
		{"jupyter token with space", func(c *contract.Command) { c.Method, c.JupyterToken = contract.MethodJupyterCopy, "0123 456789" }, contract.CodeMalformed},
		{"jupyter token on local_copy", func(c *contract.Command) { c.JupyterToken = "0123456789abcdef" }, contract.CodeMalformed},
		{"lifetime", func(c *contract.Command) { c.Lifetime = 3600 }, ""},
		{"negative lifetime", func(c *contract.Command) { c.Lifetime = -1 }, contract.CodeMalformed},
		{"lifetime over a century", func(c *contract.Command) { c.Lifetime = contract.MaxLifetime + 1 }, contract.CodeMalformed},
		{"lifetime of a download link", func(c *contract.Command) { c.Method, c.Lifetime = contract.MethodDirectDownload, 60 }, contract.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validCommand()
			tt.change(&c)
			err := c.Validate()
			wantCode(t, err, tt.want)
		})
	}
}

func TestDecodeCommandMalformed(t *testing.T) {
	for _, in := range []string{"", "{", "[]", `{"id": 5}`} {
		_, err := contract.DecodeCommand([]byte(in))
		if got := contract.CodeOf(err); got != contract.CodeMalformed {
			t.Errorf("DecodeCommand(%q) code = %q, want %q", in, got, contract.CodeMalformed)
		}
	}
}

func TestMethodSet(t *testing.T) {
	set, err := contract.ParseMethodSet([]string{"local_copy", "jupyter_copy", "local_copy"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(contract.MethodSet{contract.MethodLocalCopy, contract.MethodJupyterCopy}, set); diff != "" {
		t.Errorf("ParseMethodSet (-want +got):\n%s", diff)
	}
	if err := set.Check(contract.MethodLocalSymlink); contract.CodeOf(err) != contract.CodeMethodNotAllowed {
		t.Errorf("Check(local_symlink) = %v, want method_not_allowed", err)
	}
	if _, err := contract.ParseMethodSet([]string{"nope"}); contract.CodeOf(err) != contract.CodeInvalidMethod {
		t.Errorf("ParseMethodSet(nope) = %v, want invalid_method", err)
	}
}

func TestStatusOnlyMovesForward(t *testing.T) {
	order := []contract.EventType{contract.EventQueued, contract.EventStarted, contract.EventSucceeded, contract.EventExpired}
	for i := 1; i < len(order); i++ {
		if order[i].Status().Rank() <= order[i-1].Status().Rank() {
			t.Errorf("%s does not rank above %s", order[i], order[i-1])
		}
	}
	for _, t2 := range []contract.EventType{contract.EventResolved, contract.EventProgress} {
		if t2.Status() != contract.StatusRunning {
			t.Errorf("%s status = %s", t2, t2.Status())
		}
	}
}

// A command asks for the request an event is about only when every request
// field is equal; the jupyter_token, never in an event, does not count.
func TestSameRequest(t *testing.T) {
	cmd := validCommand()
	cmd.JobID, cmd.Origin, cmd.ExpectedAdler32 = "job-1", "rucio", "0a1b2c3d"
	ev := contract.EventFor(cmd, contract.EventStarted)
	tests := []struct {
		name   string
		change func(*contract.Command)
		want   bool
	}{
		{"same", func(*contract.Command) {}, true},
		{"other token", func(c *contract.Command) { c.JupyterToken = "another-token" }, true},
		{"other time", func(c *contract.Command) { c.RequestedAt = c.RequestedAt.Add(time.Hour) }, true},
		{"other id", func(c *contract.Command) { c.ID = "other" }, false},
		{"other job", func(c *contract.Command) { c.JobID = "job-2" }, false},
		{"other method", func(c *contract.Command) { c.Method = contract.MethodLocalSymlink }, false},
		{"other user", func(c *contract.Command) { c.Username = "bob" }, false},
		{"other source", func(c *contract.Command) { c.LocalPathOnStorage = "/mnt/storage_a/other.fits" }, false},
		{"other target", func(c *contract.Command) { c.RelativePath = "data/other.fits" }, false},
		{"other origin", func(c *contract.Command) { c.Origin = "gateway" }, false},
		{"other checksum", func(c *contract.Command) { c.ExpectedAdler32 = "ffffffff" }, false},
		{"no checksum", func(c *contract.Command) { c.ExpectedAdler32 = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cmd
			tt.change(&c)
			if got := contract.SameRequest(c, ev); got != tt.want {
				t.Errorf("SameRequest = %v, want %v", got, tt.want)
			}
		})
	}
	// An event from before events carried the checksum contradicts none.
	old := ev
	old.ExpectedAdler32 = ""
	if !contract.SameRequest(cmd, old) {
		t.Error("SameRequest = false for an event without expected_adler32, want true")
	}
}

// wantCode checks that err carries code want, or that it is nil when want
// is empty.
func wantCode(t *testing.T, err error, want contract.Code) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if got := contract.CodeOf(err); got != want {
		t.Errorf("Validate() code = %q (%v), want %q", got, err, want)
	}
}

// An event that follows another repeats every request field of it: a
// command asking for the request is the same request, and a field added to
// EventFor but forgotten in EventAfter shows here.
func TestEventAfterRepeatsTheRequest(t *testing.T) {
	cmd := validCommand()
	cmd.JobID, cmd.JobSize, cmd.Origin, cmd.ExpectedAdler32, cmd.DID = "job-1", 2, "rucio", "0a1b2c3d", "testsrc:ds1"
	queued := contract.EventFor(cmd, contract.EventQueued)
	queued.ID, queued.Source, queued.Time, queued.Message, queued.TraceID = "e1", "gateway", time.Now(), "accepted and queued", "0af7651916cd43dd8448eb211c80319c"
	got := contract.EventAfter(queued, contract.EventFailed)
	want := contract.EventFor(cmd, contract.EventFailed)
	want.TraceID = queued.TraceID
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("EventAfter (-got +want):\n%s", diff)
	}
}

// The events a request ends with after it ran, cancelled and expired,
// repeat every request field, a DID included: a redelivered command
// compared with them is the same request, not an id conflict.
func TestLaterEventsRepeatTheRequest(t *testing.T) {
	cmd := validCommand()
	cmd.LocalPathOnStorage, cmd.DID, cmd.JobID, cmd.JobSize = "", "testsrc:ds1", "job-1", 2
	started := contract.EventFor(cmd, contract.EventStarted)
	started.Attempt = 1
	succeeded := contract.EventFor(cmd, contract.EventSucceeded)
	for name, ev := range map[string]contract.Event{
		"cancelled": contract.Cancelled(started, contract.CancelRequest{CancelledBy: "alice"}),
		"expired":   contract.Expired(succeeded, time.Now()),
	} {
		if !contract.SameRequest(cmd, ev) || ev.DID != cmd.DID || ev.JobSize != cmd.JobSize {
			t.Errorf("%s event %+v does not repeat the request %+v", name, ev, cmd)
		}
	}
}

// Every error code of errors.go is in the error-codes table of
// docs/messages.md, the contract other systems read.
func TestErrorCodesDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/messages.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n## Error codes\n")
	if !ok {
		t.Fatal(`docs/messages.md has no "## Error codes" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	codes := 0
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || vs.Type == nil || fmt.Sprint(vs.Type) != "Code" {
			return true
		}
		for _, v := range vs.Values {
			lit, ok := v.(*ast.BasicLit)
			if !ok {
				continue
			}
			code, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			codes++
			if !strings.Contains(table, "| `"+code+"` ") {
				t.Errorf("error code %s is not in the error-codes table of docs/messages.md", code)
			}
		}
		return true
	})
	if codes < 40 {
		t.Errorf("found %d codes in errors.go, want them all", codes)
	}
}
