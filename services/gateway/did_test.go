package gateway_test

import (
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

// TestSubmitByDID: a request may name its source by Rucio DID instead of a
// path, never both; the command and the request's state carry the DID.
func TestSubmitByDID(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	tests := []struct {
		name, body string
		want       int
		code       contract.Code
	}{
		{"did", `{"method":"local_copy","username":"alice","did":"testsrc:ds1","relative_path":"ds1"}`, 202, ""},
		{"did and path", `{"method":"local_copy","username":"alice","did":"testsrc:ds1","local_path_on_storage":"a","relative_path":"ds1"}`, 422, contract.CodeMalformed},
		{"neither", `{"method":"local_copy","username":"alice","relative_path":"ds1"}`, 422, contract.CodeMissingField},
		{"not scope:name", `{"method":"local_copy","username":"alice","did":"ds1","relative_path":"ds1"}`, 400, contract.CodeInvalidDID},
		{"did with a checksum", `{"method":"local_copy","username":"alice","did":"testsrc:f","expected_adler32":"0a1b2c3d","relative_path":"f"}`, 422, contract.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.commands())
			r := e.do("POST", "/api/v1/stagings", tt.body)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.code != "" {
				if got := r.json(t)["code"]; got != string(tt.code) {
					t.Errorf("code = %v, want %s", got, tt.code)
				}
				return
			}
			cmds := e.commands()
			if len(cmds) != before+1 {
				t.Fatalf("%d new commands, want 1", len(cmds)-before)
			}
			cmd := cmds[len(cmds)-1]
			if cmd.DID != "testsrc:ds1" || cmd.LocalPathOnStorage != "" {
				t.Errorf("command did %q, local_path_on_storage %q", cmd.DID, cmd.LocalPathOnStorage)
			}
			st := e.do("GET", "/api/v1/stagings/"+cmd.ID, "")
			if got := st.json(t)["did"]; st.status != 200 || got != "testsrc:ds1" {
				t.Errorf("state: %d did %v", st.status, got)
			}
		})
	}
}
