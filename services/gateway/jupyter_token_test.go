package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

func TestJupyterTokenForwardedNeverLogged(t *testing.T) {
	const secret = "jhub-user-token-9f8e7d6c"
	e := newEnv(t, gateway.Config{StageWaitTimeout: 50 * time.Millisecond})
	seedBody := `{"local_path_on_storage":"/mnt/a/nb.ipynb","relative_path":"nb.ipynb"}`
	tests := []struct {
		name, path, body string
		want             int
		wantToken        string // on the command; "-" for no command
	}{
		{"seed jupyter_copy", "/stage_data?method=jupyter_copy&username=alice&jupyter_token=" + secret, seedBody, 202, secret},
		{"seed other method ignores it", "/stage-data/?method=local_copy&username=alice&jupyter_token=" + secret, seedBody, 202, ""},
		{"native jupyter_copy", "/api/v1/stagings", `{"method":"jupyter_copy","username":"alice","local_path_on_storage":"/mnt/a/nb.ipynb","relative_path":"nb.ipynb","jupyter_token":"` + secret + `"}`, 202, secret},
		{"native refuses it on another method", "/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"/mnt/a/nb.ipynb","relative_path":"nb.ipynb","jupyter_token":"` + secret + `"}`, 422, "-"},
		{"native refuses a short one", "/api/v1/stagings", `{"method":"jupyter_copy","username":"alice","local_path_on_storage":"/mnt/a/nb.ipynb","relative_path":"nb.ipynb","jupyter_token":"short"}`, 422, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.commands())
			r := e.do("POST", tt.path, tt.body)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
			if strings.Contains(string(r.body), secret) {
				t.Errorf("the answer echoes the token: %s", r.body)
			}
			cmds := e.commands()
			if tt.wantToken == "-" {
				if len(cmds) != before {
					t.Errorf("a refused request published a command")
				}
				return
			}
			if len(cmds) != before+1 {
				t.Fatalf("%d new commands, want 1", len(cmds)-before)
			}
			if got := cmds[len(cmds)-1].JupyterToken; got != tt.wantToken {
				t.Errorf("command jupyter_token = %q, want %q", got, tt.wantToken)
			}
		})
	}
	// Nothing but the command carries it: not the logs, not the events.
	if logs := e.logs.String(); strings.Contains(logs, secret) {
		t.Errorf("the token reached the logs:\n%s", logs)
	}
	for _, cmd := range e.commands() {
		r := e.do("GET", "/api/v1/stagings/"+cmd.ID, "")
		if r.status != 200 || strings.Contains(string(r.body), secret) {
			t.Errorf("state of %s: %d %s", cmd.ID, r.status, r.body)
		}
		if cmd.Method != contract.MethodJupyterCopy && cmd.JupyterToken != "" {
			t.Errorf("a %s command carries a token", cmd.Method)
		}
	}
}
