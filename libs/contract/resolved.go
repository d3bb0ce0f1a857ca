package contract

import (
	"encoding/json"
	"strings"
)

// Bounds of one resolved event's paths: a part names at most
// MaxResolvedPaths files, whose paths take at most MaxResolvedPathsSize
// bytes of JSON, so that the event stays well under MaxEventSize whatever
// the paths (each at most MaxPathLen bytes). A dataset of 10,000 files is
// reported in about 10 events.
const (
	MaxResolvedPaths     = 1000
	MaxResolvedPathsSize = 128 << 10
)

// ResolvedParts splits the resolution of a DID into the parts its
// resolved events carry, in order: paths are the DID's files relative to
// the storage root in the order Rucio listed them, bytes their total size.
// A DID without files is one part without paths.
func ResolvedParts(paths []string, bytes int64) []Resolved {
	return resolvedParts(paths, bytes, MaxResolvedPaths, MaxResolvedPathsSize)
}

func resolvedParts(paths []string, bytes int64, maxPaths, maxSize int) []Resolved {
	var parts []Resolved
	start, size := 0, 0
	for i, p := range paths {
		n := jsonLen(p) + 1 // and its comma
		if i > start && (i-start == maxPaths || size+n > maxSize) {
			parts = append(parts, Resolved{Paths: paths[start:i:i]})
			start, size = i, 0
		}
		size += n
	}
	parts = append(parts, Resolved{Paths: paths[start:len(paths):len(paths)]})
	for i := range parts {
		parts[i].Files, parts[i].Bytes = int64(len(paths)), bytes
		parts[i].Part, parts[i].Parts = i+1, len(parts)
		if parts[i].Paths == nil {
			parts[i].Paths = []string{}
		}
	}
	return parts
}

// jsonLen is the length of s encoded as a JSON string.
func jsonLen(s string) int {
	b, err := json.Marshal(s)
	if err != nil {
		// Not reached: a string always encodes. The worst case keeps
		// the bound.
		return 6*len(s) + 2
	}
	return len(b)
}

// checkResolved checks the resolved field of an event of type t.
func checkResolved(t EventType, did string, r *Resolved) error {
	switch {
	case t != EventResolved && r == nil:
		return nil
	case t != EventResolved:
		return Errorf(CodeMalformed, "resolved belongs only to a resolved event")
	case r == nil:
		return Errorf(CodeMissingField, "resolved is required on a resolved event")
	case did == "":
		return Errorf(CodeMissingField, "did is required on a resolved event")
	case r.Files < 0 || r.Bytes < 0:
		return Errorf(CodeMalformed, "resolved.files and resolved.bytes must not be negative")
	case r.Part < 1 || r.Parts < r.Part:
		return Errorf(CodeMalformed, "resolved.part must be between 1 and resolved.parts, got part %d of %d", r.Part, r.Parts)
	case r.Paths == nil:
		return Errorf(CodeMissingField, "resolved.paths is required")
	case len(r.Paths) > MaxResolvedPaths:
		return Errorf(CodeMalformed, "resolved.paths holds %d paths; a part names at most %d", len(r.Paths), MaxResolvedPaths)
	case int64(len(r.Paths)) > r.Files:
		return Errorf(CodeMalformed, "resolved.paths holds %d paths, more than the %d files of the DID", len(r.Paths), r.Files)
	}
	for _, p := range r.Paths {
		if err := checkPathText("resolved.paths", p); err != nil {
			return err
		}
		if strings.HasPrefix(p, "/") {
			return Errorf(CodeInvalidPath, "resolved.paths must be relative to the storage root, not absolute: %q", cut(p, 256))
		}
		for part := range strings.SplitSeq(p, "/") {
			if part == ".." {
				return Errorf(CodeOutsideStorage, "resolved.paths must not contain '..': %q", cut(p, 256))
			}
		}
	}
	return nil
}
