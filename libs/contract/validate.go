package contract

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on command fields.
const (
	MaxUsernameLen = 32
	MaxIDLen       = 64
	MaxPathLen     = 4096
)

// A username is a POSIX-portable login name: lower-case letters, digits,
// '_' and '-', starting with a letter or '_'. It cannot hold '/', '.', '*',
// '>' or whitespace, so it can never act as a path or a NATS subject token.
var usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

// An id is one NATS subject token: letters, digits, '_' and '-'.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var adler32RE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// ValidateUsername checks a username against the username rules.
func ValidateUsername(u string) error {
	switch {
	case u == "":
		return Errorf(CodeMissingField, "username is required")
	case len(u) > MaxUsernameLen:
		return Errorf(CodeInvalidUsername, "username is longer than %d characters", MaxUsernameLen)
	case !usernameRE.MatchString(u):
		return Errorf(CodeInvalidUsername, "username %q may only hold lower-case letters, digits, '_' and '-', and must start with a letter or '_'", u)
	}
	return nil
}

// ValidateID checks a request or job id.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return Errorf(CodeMissingField, "%s is required", field)
	case len(id) > MaxIDLen:
		return Errorf(CodeInvalidID, "%s is longer than %d characters", field, MaxIDLen)
	case !idRE.MatchString(id):
		return Errorf(CodeInvalidID, "%s may only hold letters, digits, '_' and '-'", field)
	}
	return nil
}

// ValidateSourcePath checks the form of local_path_on_storage. Whether it
// lies inside a storage root is decided by the worker that knows the roots.
func ValidateSourcePath(p string) error {
	if err := checkPathText("local_path_on_storage", p); err != nil {
		return err
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return Errorf(CodeOutsideStorage, "local_path_on_storage must not contain '..'")
		}
	}
	return nil
}

// Limits of a Rucio DID (Rucio's own: a scope of 25 characters, a name
// of 250).
const (
	maxScopeLen = 25
	maxNameLen  = 250
	MaxDIDLen   = maxScopeLen + 1 + maxNameLen
)

// ValidateDID checks the form of a Rucio DID, scope:name, and returns its
// two parts. Whether the site's Rucio knows it is decided by the worker.
func ValidateDID(did string) (scope, name string, err error) {
	scope, name, ok := strings.Cut(did, ":")
	switch {
	case !ok || scope == "" || name == "":
		return "", "", Errorf(CodeInvalidDID, "did must be scope:name, got %q", cut(did, 300))
	case len(scope) > maxScopeLen || !didScopeRE.MatchString(scope):
		return "", "", Errorf(CodeInvalidDID, "did %q: the scope is 1 to %d letters, digits, '.', '_' or '-'", cut(did, 300), maxScopeLen)
	case len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) || strings.Contains(name, `\`):
		return "", "", Errorf(CodeInvalidDID, "did %q: the name is at most %d characters of printable UTF-8, without a backslash", cut(did, 300), maxNameLen)
	}
	return scope, name, nil
}

var didScopeRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// validateSource checks the source: exactly one of local_path_on_storage
// and did.
func (c Command) validateSource() error {
	switch {
	case c.DID != "" && c.LocalPathOnStorage != "":
		return Errorf(CodeMalformed, "give either local_path_on_storage or did, not both")
	case c.DID != "" && c.ExpectedAdler32 != "":
		return Errorf(CodeMalformed, "expected_adler32 is not given with a did: the catalogue's checksum of every file is checked")
	case c.DID != "":
		_, _, err := ValidateDID(c.DID)
		return err
	case c.LocalPathOnStorage == "":
		return Errorf(CodeMissingField, "local_path_on_storage (or did) is required")
	}
	return ValidateSourcePath(c.LocalPathOnStorage)
}

// ValidateRelativePath checks relative_path: a path below the user's area,
// never absolute, never climbing out with "..", never the area itself.
func ValidateRelativePath(p string) error {
	if err := checkPathText("relative_path", p); err != nil {
		return err
	}
	if strings.HasPrefix(p, "/") {
		return Errorf(CodeOutsideUserArea, "relative_path must be relative to the user's area, not absolute")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return Errorf(CodeOutsideUserArea, "relative_path must not contain '..'")
		}
	}
	if path.Clean(p) == "." {
		return Errorf(CodeInvalidPath, "relative_path must name an entry inside the user's area")
	}
	return nil
}

func checkPathText(field, p string) error {
	switch {
	case p == "":
		return Errorf(CodeMissingField, "%s is required", field)
	case len(p) > MaxPathLen:
		return Errorf(CodeInvalidPath, "%s is longer than %d bytes", field, MaxPathLen)
	case !utf8.ValidString(p):
		return Errorf(CodeInvalidPath, "%s is not valid UTF-8", field)
	case strings.ContainsRune(p, 0):
		return Errorf(CodeInvalidPath, "%s contains a NUL byte", field)
	case strings.Contains(p, `\`):
		return Errorf(CodeInvalidPath, "%s contains a backslash; use '/' as separator", field)
	}
	return nil
}

// Validate checks every field of the command and returns the first problem
// as an *Error. The site's allowed methods are checked by the caller.
func (c Command) Validate() error {
	if c.SpecVersion == "" {
		return Errorf(CodeMissingField, "spec_version is required")
	}
	if !supportedSpec(c.SpecVersion) {
		return Errorf(CodeUnsupported, "spec_version %q is not supported; this service speaks %s", c.SpecVersion, SpecVersion)
	}
	if err := ValidateID("id", c.ID); err != nil {
		return err
	}
	if c.JobID != "" {
		if err := ValidateID("job_id", c.JobID); err != nil {
			return err
		}
	}
	if err := checkJobSize(c.JobID, c.JobSize); err != nil {
		return err
	}
	if _, err := ParseMethod(string(c.Method)); err != nil {
		return err
	}
	if err := ValidateUsername(c.Username); err != nil {
		return err
	}
	if err := c.validateSource(); err != nil {
		return err
	}
	if err := ValidateRelativePath(c.RelativePath); err != nil {
		return err
	}
	if c.JupyterToken != "" && (len(c.JupyterToken) < 8 || len(c.JupyterToken) > 512 || strings.ContainsFunc(c.JupyterToken, unicode.IsSpace)) {
		// The token itself is never echoed back.
		return Errorf(CodeMalformed, "jupyter_token must be 8 to 512 characters without spaces")
	}
	if c.JupyterToken != "" && c.Method != MethodJupyterCopy {
		return Errorf(CodeMalformed, "jupyter_token is only used by jupyter_copy")
	}
	if c.ExpectedAdler32 != "" && !adler32RE.MatchString(c.ExpectedAdler32) {
		return Errorf(CodeMalformed, "expected_adler32 must be 8 lower-case hex digits")
	}
	return checkLifetime(c.Method, c.Lifetime)
}

// MaxLifetime bounds lifetime (100 years in seconds), so that an expiry
// time always fits the stores.
const MaxLifetime = 100 * 365 * 24 * 3600

// checkLifetime checks a command's lifetime: only for the methods that
// leave an item in the user's area, which the stager can remove.
func checkLifetime(m Method, seconds int64) error {
	switch {
	case seconds < 0:
		return Errorf(CodeMalformed, "lifetime must not be negative")
	case seconds > MaxLifetime:
		return Errorf(CodeMalformed, "lifetime must be at most %d seconds", MaxLifetime)
	case seconds > 0 && !Expires(m):
		return Errorf(CodeMalformed, "lifetime applies to local_copy, local_symlink and local_hardlink, not %s", m)
	}
	return nil
}

// Expires reports whether what method m stages can be given a lifetime.
func Expires(m Method) bool {
	return m == MethodLocalCopy || m == MethodLocalSymlink || m == MethodLocalHardlink
}

// checkJobSize checks a command's job_size: only with a job_id.
func checkJobSize(jobID string, size int) error {
	switch {
	case size < 0:
		return Errorf(CodeMalformed, "job_size must not be negative")
	case size > 0 && jobID == "":
		return Errorf(CodeMalformed, "job_size belongs to an item of a job, and job_id is empty")
	}
	return nil
}

// supportedSpec accepts every minor version of the major version spoken here.
func supportedSpec(v string) bool {
	major, _, _ := strings.Cut(v, ".")
	want, _, _ := strings.Cut(SpecVersion, ".")
	return major == want
}

// DecodeCommand parses and validates a command. On a validation error the
// returned command still carries whatever fields could be read, so the
// caller can record the rejection under the request's id.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Command{}, Errorf(CodeMalformed, "command is not valid JSON: %v", err)
	}
	return c, c.Validate()
}
