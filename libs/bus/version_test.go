package bus

import "testing"

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		have string
		want bool
	}{
		{"2.9.10", false},
		{"2.9.99", false},
		{"2.10.0", false},
		{"2.11.9", false},
		{"2.12.0", true},
		{"2.12.0-beta.1", true},
		{"v2.15.2", true},
		{"3.0.0", true},
		{"1.99.99", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := versionAtLeast(tt.have, MinServerVersion); got != tt.want {
			t.Errorf("versionAtLeast(%q, %q) = %v, want %v", tt.have, MinServerVersion, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	if got, want := RedactURL("nats://user:pw@host:4222"), "nats://***@host:4222"; got != want {
		t.Errorf("RedactURL = %q, want %q", got, want)
	}
	if got, want := RedactURL("nats://host:4222"), "nats://host:4222"; got != want {
		t.Errorf("RedactURL = %q, want %q", got, want)
	}
}
