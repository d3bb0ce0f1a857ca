package api

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
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

// createFile writes a new small file under the source root so a demo has
// data to stage. It exists only when the demo flag is on, needs a
// privileged caller with authentication on, never replaces a file (the
// source storage is the site's data) and os.Root keeps it inside the root
// whatever the path says ("..", absolute, symlinks).
func (s *Server) createFile(w http.ResponseWriter, r *http.Request) {
	if !privileged(w, r, "writing to the source storage") {
		return
	}
	if s.cfg.SourceRoot == "" {
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "no source root is configured"))
		return
	}
	var body createFileRequest
	// JSON escaping can make the body several times the text; the content
	// limit is checked on the decoded text.
	if err := decodeSeedBody(w, r, min(s.cfg.MaxBodyBytes, 8*MaxDemoFileBytes), &body); err != nil {
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
		s.log.ErrorContext(r.Context(), "open_source_root_failed", "error", err)
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
	if err := writeNew(root, body.Path, []byte(body.Content)); err != nil {
		writeError(w, r, fileError(err))
		return
	}
	writeJSON(w, http.StatusCreated, createdFile{Status: "created", Path: body.Path, Bytes: len(body.Content)})
}

// writeNew writes data to a file name that must not exist yet.
func writeNew(root *os.Root, name string, data []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

func fileError(err error) error {
	switch {
	case storage.IsEscape(err):
		return contract.Errorf(contract.CodeInvalidPath, "path leaves the source root")
	case errors.Is(err, fs.ErrExist):
		return contract.Errorf(contract.CodeTargetConflict, "a file already exists at that path; the demo never replaces one")
	case errors.Is(err, fs.ErrInvalid), errors.Is(err, fs.ErrPermission):
		return contract.Errorf(contract.CodeInvalidPath, "path cannot be written: %v", errors.Unwrap(err))
	default:
		return contract.Errorf(contract.CodeIOError, "write failed: %v", errors.Unwrap(err))
	}
}
