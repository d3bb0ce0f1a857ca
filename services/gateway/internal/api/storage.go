package api

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// Pages of GET /api/v1/storage: the default and the largest.
const (
	defaultStorageLimit = 200
	maxStorageLimit     = 1000
)

// StorageEntry is one name in a listed directory. Size and ModifiedAt are
// the entry's own, except for a symbolic link that resolves inside the
// storage, which shows its target's (Link says what that is). A link that
// leaves the storage or leads nowhere is shown, never followed.
type StorageEntry struct {
	Name       string    `json:"name"`
	Type       string    `json:"type"` // file, dir, symlink or other
	Size       int64     `json:"size"`
	ModifiedAt time.Time `json:"modified_at"`
	// Link, for a symlink only: file, dir or other when it resolves inside
	// the storage; outside when it leaves it; broken when it leads nowhere.
	Link string `json:"link,omitempty"`
}

// StorageListing is one page of a directory, in name order.
type StorageListing struct {
	Path       string         `json:"path"`
	Root       string         `json:"root"`
	Items      []StorageEntry `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// browseStorage lists one directory of the source storage, read-only,
// through the same os.Root rules as staging (libs/storage): no "..", no
// absolute path elsewhere, no symbolic link out of the mount. With auth on,
// any authenticated user may browse: every user may stage any item of the
// storage, so its names tell nobody more than staging does.
func (s *Server) browseStorage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.StorageBrowserDisabled {
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "the storage browser is turned off at this site (STAGING_STORAGE_BROWSER_DISABLED)"))
		return
	}
	if s.cfg.SourceRoot == "" {
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "no source root is configured"))
		return
	}
	q := r.URL.Query()
	limit, after, err := storagePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	root, err := storage.Open(s.cfg.SourceRoot)
	if err != nil {
		s.log.ErrorContext(r.Context(), "open_source_root_failed", "error", err)
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "the source root cannot be opened"))
		return
	}
	defer root.Close()
	dir, err := browseDir(root, q.Get("path"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	names, err := readNames(root, dir, q.Get("path"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	start, _ := slices.BinarySearch(names, after)
	if start < len(names) && after != "" && names[start] == after {
		start++
	}
	page := names[start:min(start+limit, len(names))]
	listing := StorageListing{Path: dir, Root: root.Dir(), Items: make([]StorageEntry, 0, len(page))}
	for _, name := range page {
		e, err := entry(root.OS(), path.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the directory was read
		}
		if err != nil {
			writeError(w, r, storage.SourceError(path.Join(dir, name), err))
			return
		}
		listing.Items = append(listing.Items, e)
	}
	if start+limit < len(names) {
		listing.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1]))
	}
	writeJSON(w, http.StatusOK, listing)
}

// storagePage reads the page size and the cursor, the last name of the
// previous page.
func storagePage(limitText, cursor string) (int, string, error) {
	limit := defaultStorageLimit
	if limitText != "" {
		n, err := strconv.Atoi(limitText)
		if err != nil || n < 1 || n > maxStorageLimit {
			return 0, "", contract.Errorf(contract.CodeMalformed, "limit must be a whole number from 1 to %d", maxStorageLimit)
		}
		limit = n
	}
	after, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, "", contract.Errorf(contract.CodeMalformed, "cursor is not one this endpoint returned")
	}
	return limit, string(after), nil
}

// browseDir resolves the path query parameter like a request's
// local_path_on_storage (absolute inside the mount, or relative to it),
// except that the mount itself, "" or ".", is a directory to list.
func browseDir(root *storage.Root, p string) (string, error) {
	if p == "" || path.Clean(p) == "." || path.Clean(p) == root.Dir() {
		return ".", nil
	}
	return root.Rel(p)
}

// readNames are the names in directory dir, sorted. os.Root follows a
// symbolic link on the way only while it stays inside the mount.
func readNames(root *storage.Root, dir, asked string) ([]string, error) {
	f, err := root.OS().Open(dir)
	if err != nil {
		return nil, storage.SourceError(asked, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, storage.SourceError(asked, err)
	}
	if !fi.IsDir() {
		return nil, contract.Errorf(contract.CodeInvalidPath, "%s is a file, not a directory", asked)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, storage.SourceError(asked, err)
	}
	slices.Sort(names)
	return names, nil
}

// entry describes name without following it when it is a symbolic link,
// except to learn, through the root, whether it stays inside the storage.
func entry(root *os.Root, name string) (StorageEntry, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return StorageEntry{}, err
	}
	e := StorageEntry{Name: path.Base(name), Type: entryType(fi), Size: fi.Size(), ModifiedAt: fi.ModTime().UTC()}
	if e.Type != "file" {
		e.Size = 0 // a directory's or a link's own size says nothing to a user
	}
	if e.Type != "symlink" {
		return e, nil
	}
	target, err := root.Stat(name)
	switch {
	case err == nil:
		e.Link = entryType(target)
		if e.Link == "file" {
			e.Size, e.ModifiedAt = target.Size(), target.ModTime().UTC()
		}
	case storage.IsEscape(err):
		e.Link = "outside"
	default:
		e.Link = "broken"
	}
	return e, nil
}

func entryType(fi fs.FileInfo) string {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	case fi.IsDir():
		return "dir"
	case fi.Mode().IsRegular():
		return "file"
	default:
		return "other"
	}
}
