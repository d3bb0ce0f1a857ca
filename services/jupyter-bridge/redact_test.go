package jupyterbridge

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

func TestRedact(t *testing.T) {
	const token = "s3cret-user-token"
	type view struct {
		Text      string
		Code      contract.Code
		Permanent bool
	}
	viewOf := func(err error) view {
		v := view{Text: err.Error(), Permanent: bus.IsPermanent(err)}
		if e, ok := errors.AsType[*contract.Error](err); ok {
			v.Code = e.Code
		}
		return v
	}
	tests := []struct {
		name  string
		err   error
		token string
		want  view
	}{
		{"no token in the request", contract.Errorf(contract.CodeJupyterForbidden, "refused"), "",
			view{Text: "jupyter_forbidden: refused", Code: contract.CodeJupyterForbidden}},
		{"token absent from the error", fmt.Errorf("upload: %w", contract.Errorf(contract.CodeJupyterUnavailable, "down")), token,
			view{Text: "upload: jupyter_unavailable: down", Code: contract.CodeJupyterUnavailable}},
		{"token in a coded error", fmt.Errorf("x: %w", contract.Errorf(contract.CodeJupyterForbidden, "bad token "+token+" here")), token,
			view{Text: "jupyter_forbidden: bad token [redacted] here", Code: contract.CodeJupyterForbidden}},
		{"token in an error without code", errors.New("echo " + token), token,
			view{Text: "echo [redacted]"}},
		{"permanent kept", bus.Permanent(contract.Errorf(contract.CodeInvalidPath, "p "+token)), token,
			view{Text: "invalid_path: p [redacted]", Code: contract.CodeInvalidPath, Permanent: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(viewOf(redact(tt.err, tt.token)), tt.want); diff != "" {
				t.Errorf("redact (-got +want):\n%s", diff)
			}
		})
	}
}
