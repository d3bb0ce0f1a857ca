package contract

// Method names how a request is staged.
type Method string

// The staging methods.
const (
	MethodLocalCopy      Method = "local_copy"
	MethodLocalSymlink   Method = "local_symlink"
	MethodLocalHardlink  Method = "local_hardlink"
	MethodDirectDownload Method = "direct_download"
	MethodJupyterCopy    Method = "jupyter_copy"
)

// Methods lists every method the contract knows, in a stable order.
var Methods = []Method{MethodLocalCopy, MethodLocalSymlink, MethodLocalHardlink, MethodDirectDownload, MethodJupyterCopy}

// StagerMethods are the methods the stager carries out.
var StagerMethods = []Method{MethodLocalCopy, MethodLocalSymlink, MethodLocalHardlink, MethodDirectDownload}

// ParseMethod returns the method named s, or an invalid_method error.
func ParseMethod(s string) (Method, error) {
	for _, m := range Methods {
		if string(m) == s {
			return m, nil
		}
	}
	if s == "" {
		return "", Errorf(CodeMissingField, "method is required")
	}
	return "", Errorf(CodeInvalidMethod, "unknown method %q; known methods: %s", s, methodList(Methods))
}

// MethodSet is the set of methods a site allows.
type MethodSet []Method

// Allows reports whether m is in the set.
func (s MethodSet) Allows(m Method) bool {
	for _, a := range s {
		if a == m {
			return true
		}
	}
	return false
}

// Check returns a method_not_allowed error when m is not in the set.
func (s MethodSet) Check(m Method) error {
	if s.Allows(m) {
		return nil
	}
	return Errorf(CodeMethodNotAllowed, "method %q is not allowed at this site; allowed methods: %s", m, methodList(s))
}

// ParseMethodSet parses a comma-separated list of method names.
func ParseMethodSet(names []string) (MethodSet, error) {
	set := make(MethodSet, 0, len(names))
	for _, n := range names {
		m, err := ParseMethod(n)
		if err != nil {
			return nil, err
		}
		if !set.Allows(m) {
			set = append(set, m)
		}
	}
	return set, nil
}

func methodList(ms []Method) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += ", "
		}
		s += string(m)
	}
	return s
}
