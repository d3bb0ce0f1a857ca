package api

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"

	"github.com/skao/skao-staging/libs/contract"
)

// MaxDemoFileBytes bounds what POST /create-file/ writes.
const MaxDemoFileBytes = 64 << 10

type createFileRequest struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

type createdFile struct {
	Status string `json:"status"`
	Path   string `json:"path"`
	Bytes  int    `json:"bytes"`
}

// createFile writes a small file under the source root so a demo has data
// to stage. It exists only when the demo flag is on; os.Root keeps it inside
// the root whatever the path says ("..", absolute, symlinks).
func (s *Server) createFile(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SourceRoot == "" {
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "no source root is configured"))
		return
	}
	var body createFileRequest
	// JSON escaping can make the body several times the text; the content
	// limit is checked on the decoded text.
	if err := decodeBody(w, r, min(s.cfg.MaxBodyBytes, 8*MaxDemoFileBytes), &body); err != nil {
		writeError(w, r, err)
		return
	}
	if len(body.Content) > MaxDemoFileBytes {
		writeError(w, r, contract.Errorf(contract.CodeBodyTooLarge, "content is larger than %d bytes", MaxDemoFileBytes))
		return
	}
	if err := contract.ValidateRelativePath(body.Path); err != nil {
		writeError(w, r, contract.Errorf(contract.CodeInvalidPath, "path: %s", contract.AsError(err).Detail))
		return
	}
	root, err := os.OpenRoot(s.cfg.SourceRoot)
	if err != nil {
		s.log.ErrorContext(r.Context(), "open_source_root_failed", "request_id", RequestID(r.Context()), "error", err)
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "the source root cannot be opened"))
		return
	}
	defer root.Close()
	if dir := path.Dir(body.Path); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			writeError(w, r, fileError(err))
			return
		}
	}
	if err := root.WriteFile(body.Path, []byte(body.Content), 0o644); err != nil {
		writeError(w, r, fileError(err))
		return
	}
	writeJSON(w, http.StatusCreated, createdFile{Status: "created", Path: body.Path, Bytes: len(body.Content)})
}

func fileError(err error) error {
	switch {
	case escapes(err):
		return contract.Errorf(contract.CodeInvalidPath, "path leaves the source root")
	case errors.Is(err, fs.ErrExist), errors.Is(err, fs.ErrInvalid), errors.Is(err, fs.ErrPermission):
		return contract.Errorf(contract.CodeInvalidPath, "path cannot be written: %v", errors.Unwrap(err))
	default:
		return contract.Errorf(contract.CodeIOError, "write failed: %v", errors.Unwrap(err))
	}
}

// escapes reports whether os.Root refused err's path for leaving the root;
// os keeps that error unexported, so its text is matched.
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}
