package service_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/skao/skao-staging/libs/service"
)

// A failed run is logged as one JSON record with exit status 1; help and
// success exit 0 and log nothing.
func TestExit(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantLog    bool
	}{
		{nil, 0, false},
		{fmt.Errorf("flags: %w", flag.ErrHelp), 0, false},
		{errors.New("nats: no servers available for connection"), 1, true},
	}
	for _, tt := range tests {
		var buf strings.Builder
		if got := service.Exit(&buf, "stager", tt.err); got != tt.wantStatus {
			t.Errorf("Exit(%v) = %d, want %d", tt.err, got, tt.wantStatus)
		}
		if !tt.wantLog {
			if buf.Len() != 0 {
				t.Errorf("Exit(%v) logged %q, want nothing", tt.err, buf.String())
			}
			continue
		}
		var rec struct{ Level, Msg, Service, Error string }
		if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
			t.Fatalf("Exit(%v) logged %q: not one JSON record: %v", tt.err, buf.String(), err)
		}
		if rec.Level != "ERROR" || rec.Msg != "fatal" || rec.Service != "stager" || rec.Error != tt.err.Error() {
			t.Errorf("Exit(%v) logged %+v, want an ERROR fatal record of the stager with the error", tt.err, rec)
		}
	}
}
