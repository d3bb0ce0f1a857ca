package downloads

import (
	"strconv"
	"strings"
	"testing"

	"github.com/skao/skao-staging/libs/contract"
)

func TestParseRanges(t *testing.T) {
	const size = 1000
	// many is n ranges of 5 bytes, 10 apart, or of one byte, all over
	// the file, if tiny.
	many := func(n int, tiny bool) string {
		parts := make([]string, n)
		for i := range parts {
			first, last := i*10, i*10+4
			if tiny {
				first, last = i%size, i%size
			}
			parts[i] = strconv.Itoa(first) + "-" + strconv.Itoa(last)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	tests := []struct {
		name, header string
		want         string // normalised; "" for refused
	}{
		{"one", "bytes=100-199", "bytes=100-199"},
		{"open end", "bytes=900-", "bytes=900-999"},
		{"suffix", "bytes=-10", "bytes=990-999"},
		{"suffix longer than the file", "bytes=-5000", "bytes=0-999"},
		{"end past the file", "bytes=990-5000", "bytes=990-999"},
		{"spaces", "bytes= 0-9 , 20-29", "bytes=0-9,20-29"},
		{"out of order, apart", "bytes=500-599,0-99", "bytes=500-599,0-99"},
		{"adjacent", "bytes=0-99,100-199", "bytes=0-99,100-199"},
		{"unsatisfiable ones dropped", "bytes=0-9,5000-", "bytes=0-9"},
		{"16 ranges", many(16, false), many(16, false)},
		{"17 ranges", many(17, false), ""},
		{"60000 one-byte ranges", many(60000, true), ""},
		{"overlapping", "bytes=0-99,50-149", ""},
		{"the same range twice", "bytes=0-0,0-0", ""},
		{"overlapping out of order", "bytes=500-599,0-999", ""},
		{"suffix overlapping", "bytes=900-949,-60", ""},
		{"none satisfiable", "bytes=1000-", ""},
		{"zero suffix", "bytes=-0", ""},
		{"other unit", "items=0-1", ""},
		{"malformed", "bytes=abc", ""},
		{"reversed", "bytes=10-5", ""},
		{"signed", "bytes=+5-10", ""},
		{"no digits", "bytes=-", ""},
		{"overlong header", "bytes=0-1" + strings.Repeat(" ", maxRangeHeader), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := parseRanges(tt.header, size)
			if tt.want == "" {
				if contract.CodeOf(err) != contract.CodeRangeNotSatisfiable {
					t.Errorf("parseRanges = %v, %v; want range_not_satisfiable", rs, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRanges: %v", err)
			}
			if got := normalizeRanges(rs); got != tt.want {
				t.Errorf("normalised = %q, want %q", got, tt.want)
			}
		})
	}
}
