package stage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
)

// Catalogue resolves a Rucio DID into its files on the site's RSE
// (libs/rucio's Client).
type Catalogue interface {
	Kind(ctx context.Context, did string) (rucio.Kind, error)
	Files(ctx context.Context, did string, fn func(rucio.File) error) error
}

// planDID plans the copy of the files of cmd.DID. A file DID is one file;
// a dataset or a container is a tree of every file under its name, a '/'
// in a name making subdirectories. Every path Rucio gives goes through the
// storage's os.Root checks, as a user's path does (rucio.Locate), and its
// size is compared with the catalogue's before anything is written. The
// files found are reported to report (resolved events) before the plan is
// returned.
func (s *Stager) planDID(ctx context.Context, cmd contract.Command, report Report) (*plan, error) {
	p, paths, err := s.resolveDID(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if report != nil {
		if err := report.Resolved(paths, p.bytes); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// resolveDID plans the files of cmd.DID (planDID) and returns their paths
// on the storage in the order Rucio listed them.
func (s *Stager) resolveDID(ctx context.Context, cmd contract.Command) (*plan, []string, error) {
	if s.Rucio == nil {
		return nil, nil, contract.Errorf(contract.CodeMethodNotAllowed, "staging by DID is not set up at this site (STAGING_RUCIO_URL)")
	}
	ctx, span := s.Tracer.Start(ctx, "stager.resolve_did")
	defer span.End()
	kind, err := s.Rucio.Kind(ctx, cmd.DID)
	if err != nil {
		return nil, nil, err
	}
	if kind == rucio.KindFile {
		var p *plan
		err := s.Rucio.Files(ctx, cmd.DID, func(f rucio.File) error {
			if p != nil {
				return contract.Errorf(contract.CodeReplicaUnavailable, "rucio lists more than one file for the file DID %s", cmd.DID)
			}
			src, err := rucio.Locate(s.Source, f)
			if err != nil {
				return err
			}
			p = &plan{didKind: kind, top: src, size: f.Bytes, files: 1, bytes: f.Bytes, cat: &f}
			return nil
		})
		switch {
		case err != nil:
			return nil, nil, err
		case p == nil:
			return nil, nil, contract.Errorf(contract.CodeReplicaUnavailable, "rucio lists no file for the file DID %s", cmd.DID)
		}
		return p, []string{p.top}, nil
	}

	p := &plan{didKind: kind, tree: true, catalogue: true, dirs: []dir{{sub: "."}}}
	dirs := map[string]int{".": 0}
	names := map[string]bool{}
	var paths []string
	err = s.Rucio.Files(ctx, cmd.DID, func(f rucio.File) error {
		if err := rucio.CheckName(cmd.DID, f.Name); err != nil {
			return err
		}
		if _, isDir := dirs[f.Name]; names[f.Name] || isDir {
			return contract.Errorf(contract.CodeTargetConflict, "%s holds two files named %s", cmd.DID, f.Name)
		}
		names[f.Name] = true
		src, err := rucio.Locate(s.Source, f)
		if err != nil {
			return err
		}
		i, err := p.dirOf(dirs, names, cmd.DID, path.Dir(f.Name))
		if err != nil {
			return err
		}
		p.dirs[i].files = append(p.dirs[i].files, file{name: path.Base(f.Name), size: f.Bytes, src: src, cat: &f})
		paths = append(paths, src)
		p.files++
		p.bytes += f.Bytes
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return p, paths, nil
}

// dirOf returns the index in p.dirs of directory sub of the tree, adding
// it and its parents, parents first, when they are new.
func (p *plan) dirOf(dirs map[string]int, files map[string]bool, did, sub string) (int, error) {
	if i, ok := dirs[sub]; ok {
		return i, nil
	}
	if files[sub] {
		return 0, contract.Errorf(contract.CodeTargetConflict, "%s holds a file named %s and files below %s/", did, sub, sub)
	}
	if _, err := p.dirOf(dirs, files, did, path.Dir(sub)); err != nil {
		return 0, err
	}
	p.dirs = append(p.dirs, dir{sub: sub})
	dirs[sub] = len(p.dirs) - 1
	return dirs[sub], nil
}

// DIDDownload is what a direct_download of a DID serves: a file DID's
// file, or every file of a dataset or container, listed again when the
// link is used.
type DIDDownload struct {
	// Path is a file DID's file, relative to the storage; empty for a
	// dataset or a container.
	Path string
	// Kind is the DID's type.
	Kind  rucio.Kind
	Files int64
	Bytes int64
}

// DownloadOfDID resolves and checks cmd's DID for direct_download, as for
// a copy (planDID): every file on the site's RSE, found through the
// storage's os.Root, its name fit for a path and its size the catalogue's.
// A file DID comes back as its path; a dataset or a container as its
// kind, file count and size alone, its files being served as they are
// listed again when the link is used.
func (s *Stager) DownloadOfDID(ctx context.Context, cmd contract.Command, report Report) (DIDDownload, error) {
	if err := contract.ValidateUsername(cmd.Username); err != nil {
		return DIDDownload{}, err
	}
	p, err := s.planDID(ctx, cmd, report)
	if err != nil {
		return DIDDownload{}, err
	}
	d := DIDDownload{Kind: p.didKind, Files: p.files, Bytes: p.bytes}
	if !p.tree {
		d.Path = p.top
	}
	return d, nil
}

// LinkDID carries out local_symlink or local_hardlink of a DID: a file DID
// is linked as a path is; a dataset or container becomes a directory of
// links to its files, built under a temporary name and renamed into place
// as a copied tree is.
func (s *Stager) LinkDID(ctx context.Context, cmd contract.Command, report Report) (Result, error) {
	p, err := s.planDID(ctx, cmd, report)
	if err != nil {
		return Result{}, err
	}
	if !p.tree {
		cmd.LocalPathOnStorage = p.top
		if cmd.Method == contract.MethodLocalHardlink {
			return s.Hardlink(ctx, cmd)
		}
		return s.Symlink(ctx, cmd)
	}
	p.link = cmd.Method
	return s.stagePlan(ctx, cmd, p, report)
}

// linkFile makes the link to a DID's file f in the directory open as dir:
// a symbolic link to its absolute path, or a hard link to the inode
// os.Root opened (never given to the user: it is the source's).
func (s *Stager) linkFile(t *target, method contract.Method, f file, dir int, m *meter) error {
	if method == contract.MethodLocalSymlink {
		dest := filepath.Join(s.Source.Dir(), filepath.FromSlash(f.src))
		if err := unix.Symlinkat(dest, dir, f.name); err != nil {
			return targetError(t.shown, &fs.PathError{Op: "symlinkat", Path: f.name, Err: err})
		}
		if t.own {
			if err := unix.Fchownat(dir, f.name, t.owner.UID, t.owner.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return targetError(t.shown, &fs.PathError{Op: "fchownat", Path: f.name, Err: err})
			}
		}
		m.files.Add(1)
		return nil
	}
	in, err := s.Source.OS().OpenFile(f.src, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return storage.SourceError(f.src, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return storage.SourceError(f.src, err)
	}
	if !st.Mode().IsRegular() {
		return contract.Errorf(contract.CodeInvalidPath, "%s is no longer a regular file", f.src)
	}
	if err := f.cat.CheckSize(st.Size()); err != nil {
		return err
	}
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(in.Fd())), dir, f.name, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeCrossDevice, "the storage and the user area %s are on different filesystems; a hard link cannot cross them (use local_copy or local_symlink)", t.shown), err)
	}
	if err != nil {
		return targetError(t.shown, &fs.PathError{Op: "linkat", Path: f.name, Err: err})
	}
	m.files.Add(1)
	m.bytes.Add(st.Size())
	return nil
}

func didMessage(cmd contract.Command) string {
	if cmd.DID == "" {
		return ""
	}
	return fmt.Sprintf(" of %s", cmd.DID)
}
