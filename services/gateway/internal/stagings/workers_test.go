package stagings

import "testing"

func TestMatchesAny(t *testing.T) {
	const subject = "staging.requests.jupyter_copy"
	tests := []struct {
		filters []string
		want    bool
	}{
		{nil, false},
		{[]string{"staging.requests.local_copy", "staging.requests.local_symlink"}, false},
		{[]string{"staging.requests.jupyter_copy"}, true},
		{[]string{"staging.requests.*"}, true},
		{[]string{"staging.>"}, true},
		{[]string{"staging.requests.jupyter_copy.>"}, false},
		{[]string{"staging.*"}, false},
		{[]string{""}, true}, // a consumer without filter takes every subject
	}
	for _, tt := range tests {
		if got := matchesAny(tt.filters, subject); got != tt.want {
			t.Errorf("matchesAny(%q, %s) = %v, want %v", tt.filters, subject, got, tt.want)
		}
	}
}
