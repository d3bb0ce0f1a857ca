package downloads

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/skao/skao-staging/libs/contract"
)

// MaxRanges is the most byte ranges one request may ask for: a resuming or
// seeking client asks for one or a few, while thousands of tiny ranges make
// a multipart answer many times the size of the header that asked for it.
const MaxRanges = 16

// maxRangeHeader bounds the Range header read: MaxRanges ranges of two
// 19-digit positions each fit, with room for spaces.
const maxRangeHeader = 1024

// byteRange is one satisfiable range, first to last byte inclusive.
type byteRange struct{ first, last int64 }

// parseRanges reads the Range header h against a file of size bytes, as
// http.ServeContent will serve it, and refuses what would cost out of
// proportion to serve: more than MaxRanges ranges, or ranges that overlap
// (RFC 9110 section 14.2 lets a server refuse them; Apache's MaxRanges
// and merging of overlaps came with CVE-2011-3192). It returns the
// satisfiable ranges in the order asked; a range_not_satisfiable error when
// there are too many, when two overlap, when none is satisfiable or when
// the header is malformed (the last two ServeContent answers 416 too).
func parseRanges(h string, size int64) ([]byteRange, error) {
	if len(h) > maxRangeHeader {
		return nil, contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header is longer than %d bytes", maxRangeHeader)
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header must be bytes=<first>-<last>[,...]")
	}
	var ranges []byteRange
	asked := 0
	for ra := range strings.SplitSeq(spec, ",") {
		ra = strings.TrimSpace(ra)
		if ra == "" {
			continue
		}
		if asked++; asked > MaxRanges {
			return nil, contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header asks for more than %d ranges", MaxRanges)
		}
		r, satisfiable, err := parseRange(ra, size)
		if err != nil {
			return nil, err
		}
		if satisfiable {
			ranges = append(ranges, r)
		}
	}
	if len(ranges) == 0 {
		return nil, contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header asks for no byte of the file's %d", size)
	}
	sorted := slices.SortedFunc(slices.Values(ranges), func(a, b byteRange) int { return cmp.Compare(a.first, b.first) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].first <= sorted[i-1].last {
			return nil, contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header asks for overlapping ranges")
		}
	}
	return ranges, nil
}

// parseRange reads one range spec (first-last, first- or -suffix) of a file
// of size bytes; satisfiable is false for one that asks for no byte of it.
func parseRange(ra string, size int64) (r byteRange, satisfiable bool, err error) {
	invalid := contract.Errorf(contract.CodeRangeNotSatisfiable, "the Range header holds a malformed range")
	start, end, ok := strings.Cut(ra, "-")
	if !ok {
		return r, false, invalid
	}
	start, end = strings.TrimSpace(start), strings.TrimSpace(end)
	if start == "" {
		// The last n bytes.
		n, err := strconv.ParseInt(end, 10, 64)
		if err != nil || n < 0 || end[0] == '+' {
			return r, false, invalid
		}
		if n == 0 || size == 0 {
			return r, false, nil
		}
		return byteRange{first: size - min(n, size), last: size - 1}, true, nil
	}
	first, err := strconv.ParseInt(start, 10, 64)
	if err != nil || first < 0 || start[0] == '+' {
		return r, false, invalid
	}
	last := size - 1
	if end != "" {
		l, err := strconv.ParseInt(end, 10, 64)
		if err != nil || l < first || end[0] == '+' {
			return r, false, invalid
		}
		last = min(l, size-1)
	}
	if first >= size {
		return r, false, nil
	}
	return byteRange{first: first, last: last}, true, nil
}

// normalizeRanges is ranges as a bounded Range value for events and logs:
// absolute positions, in the order asked, no spaces.
func normalizeRanges(ranges []byteRange) string {
	var b strings.Builder
	b.WriteString("bytes=")
	for i, r := range ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(r.first, 10) + "-" + strconv.FormatInt(r.last, 10))
	}
	return b.String()
}
