package stage

import (
	"errors"
	"io/fs"
	"os"
	"path"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
)

// plan is what a copy will do, known before anything is written.
type plan struct {
	tree  bool
	top   string // the file or the top of the tree, relative to the storage
	size  int64  // of the file, when not a tree
	dirs  []dir  // of a tree, parents first: the top (".") first
	files int64
	bytes int64
	// catalogue: the tree is a DID's, its files named by their own
	// paths on the storage (file.src), not found below top.
	catalogue bool
	// link is the method of a DID's tree of links (local_symlink,
	// local_hardlink); empty for copies.
	link contract.Method
	// cat is what the catalogue says of a file DID's file.
	cat *rucio.File
	// didKind is a DID's type, when the plan is a DID's.
	didKind rucio.Kind
}

// dir is a directory of a tree and the files in it.
type dir struct {
	sub   string // relative to the top of the tree
	files []file
}

type file struct {
	name string // in its directory
	size int64
	// link: a symbolic link, followed from the storage's root (it may lead
	// out of its directory).
	link bool
	// src is the file's own path on the storage, in a DID's tree; cat
	// what the catalogue says of it.
	src string
	cat *rucio.File
}

// verb says what staging p did, for the result's message.
func (p *plan) verb() string {
	switch p.link {
	case contract.MethodLocalSymlink:
		return "symlinked"
	case contract.MethodLocalHardlink:
		return "hard-linked"
	}
	return "staged"
}

func (p *plan) kind() fs.FileMode {
	if p.tree {
		return fs.ModeDir
	}
	return 0
}

// planCopy plans the copy of the source rel, a file or a tree, as fi
// describes it.
func (s *Stager) planCopy(rel string, fi fs.FileInfo) (*plan, error) {
	if fi.IsDir() {
		return s.planTree(rel)
	}
	return &plan{top: rel, size: fi.Size(), files: 1, bytes: fi.Size()}, nil
}

// planTree lists the directories and files below rel. A symbolic link in
// the tree is followed when it stays on the storage and names a file;
// one leading outside fails the whole request.
func (s *Stager) planTree(rel string) (*plan, error) {
	p := &plan{tree: true, top: rel}
	d, err := s.Source.OS().OpenRoot(rel)
	if err == nil {
		err = s.planDir(p, d, ".")
		d.Close()
	}
	if err != nil {
		if _, ok := errors.AsType[*contract.Error](err); ok {
			return nil, err
		}
		return nil, storage.SourceError(rel, err)
	}
	return p, nil
}

// planDir adds directory sub of the tree, opened as d, and what is below
// it to p. Each entry is looked at by its name in d: one fstatat, not a
// resolution of its whole path. A directory read through os.Root makes
// that fstatat (AT_SYMLINK_NOFOLLOW) for every entry as it reads it, so
// the entry's Info costs no further call.
func (s *Stager) planDir(p *plan, d *os.Root, sub string) error {
	entries, err := fs.ReadDir(d.FS(), ".")
	if err != nil {
		return err
	}
	p.dirs = append(p.dirs, dir{sub: sub})
	this := len(p.dirs) - 1
	var subdirs []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return err
		}
		f := file{name: e.Name()}
		if fi.Mode().Type() == fs.ModeSymlink {
			src := path.Join(p.top, sub, f.name)
			if fi, err = s.Source.OS().Stat(src); err != nil {
				return err
			}
			if fi.IsDir() {
				return contract.Errorf(contract.CodeInvalidPath, "%s is a symbolic link to a directory; only links to files are followed in a tree", src)
			}
			f.link = true
		}
		switch {
		case fi.IsDir():
			subdirs = append(subdirs, f.name)
		case fi.Mode().IsRegular():
			f.size = fi.Size()
			p.dirs[this].files = append(p.dirs[this].files, f)
			p.files++
			p.bytes += f.size
		default:
			return contract.Errorf(contract.CodeInvalidPath, "%s is neither a file nor a directory", path.Join(p.top, sub, f.name))
		}
	}
	for _, name := range subdirs {
		c, err := d.OpenRoot(name)
		if err != nil {
			return err
		}
		err = s.planDir(p, c, path.Join(sub, name))
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
