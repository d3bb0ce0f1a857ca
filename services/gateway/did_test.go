package gateway_test

import (
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

// TestSubmitByDID: a request may name its source by Rucio DID instead of a
// path, never both; the command and the request's state carry the DID. The
// seed's POST /stage_data takes the did in its body and refuses it as
// /api/v1/stagings does.
func TestSubmitByDID(t *testing.T) {
	// No worker takes the commands: /stage_data answers 202 once its wait
	// runs out, the command still waiting on the queue.
	e := newEnv(t, gateway.Config{StageWaitTimeout: 100 * time.Millisecond})
	endpoints := []struct {
		name, path string
		body       func(fields string) string
		origin     string
	}{
		{"stagings", "/api/v1/stagings", func(f string) string { return `{"method":"local_copy","username":"alice",` + f + `}` }, "gateway"},
		{"seed", "/stage_data?method=local_copy&username=alice", func(f string) string { return `{` + f + `}` }, contract.OriginStageData},
		{"seed data wrapper", "/stage-data/?method=local_copy&username=alice", func(f string) string { return `{"data":{` + f + `}}` }, contract.OriginStageData},
	}
	tests := []struct {
		name, fields string
		want         int
		code         contract.Code
	}{
		{"did", `"did":"testsrc:ds1","relative_path":"ds1"`, 202, ""},
		{"did and path", `"did":"testsrc:ds1","local_path_on_storage":"a","relative_path":"ds1"`, 422, contract.CodeMalformed},
		{"neither", `"relative_path":"ds1"`, 422, contract.CodeMissingField},
		{"not scope:name", `"did":"ds1","relative_path":"ds1"`, 400, contract.CodeInvalidDID},
		{"did with a checksum", `"did":"testsrc:f","expected_adler32":"0a1b2c3d","relative_path":"f"`, 422, contract.CodeMalformed},
	}
	for _, ep := range endpoints {
		for _, tt := range tests {
			t.Run(ep.name+"/"+tt.name, func(t *testing.T) {
				before := len(e.commands())
				r := e.do("POST", ep.path, ep.body(tt.fields))
				if r.status != tt.want {
					t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
				}
				if tt.code != "" {
					got := r.json(t)
					if got["code"] != string(tt.code) {
						t.Errorf("code = %v, want %s", got["code"], tt.code)
					}
					// Recorded as rejected, and never published.
					id, _ := got["id"].(string)
					if ev, ok := e.lastEvent(id); !ok || ev.Type != contract.EventRejected || ev.Error == nil || ev.Error.Code != tt.code {
						t.Errorf("rejected event of %q = %+v (found %v)", id, ev, ok)
					}
					if n := len(e.commands()); n != before {
						t.Errorf("%d commands published for a refused request", n-before)
					}
					return
				}
				cmds := e.commands()
				if len(cmds) != before+1 {
					t.Fatalf("%d new commands, want 1", len(cmds)-before)
				}
				cmd := cmds[len(cmds)-1]
				if cmd.DID != "testsrc:ds1" || cmd.LocalPathOnStorage != "" || cmd.Origin != ep.origin {
					t.Errorf("command did %q, local_path_on_storage %q, origin %q", cmd.DID, cmd.LocalPathOnStorage, cmd.Origin)
				}
				if id := r.json(t)["id"]; id != cmd.ID {
					t.Errorf("answered id %v, published %s", id, cmd.ID)
				}
				st := e.do("GET", "/api/v1/stagings/"+cmd.ID, "")
				if got := st.json(t)["did"]; st.status != 200 || got != "testsrc:ds1" {
					t.Errorf("state: %d did %v", st.status, got)
				}
			})
		}
	}
}
