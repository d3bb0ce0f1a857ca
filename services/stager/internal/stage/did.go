package stage

import (
	"context"
	"fmt"
	"path"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
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
// size is compared with the catalogue's before anything is written.
func (s *Stager) planDID(ctx context.Context, cmd contract.Command) (*plan, error) {
	if s.Rucio == nil {
		return nil, contract.Errorf(contract.CodeMethodNotAllowed, "staging by DID is not set up at this site (STAGING_RUCIO_URL)")
	}
	ctx, span := s.Tracer.Start(ctx, "stager.resolve_did")
	defer span.End()
	kind, err := s.Rucio.Kind(ctx, cmd.DID)
	if err != nil {
		return nil, err
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
			p = &plan{top: src, size: f.Bytes, files: 1, bytes: f.Bytes, cat: &f}
			return nil
		})
		return p, err
	}

	p := &plan{tree: true, catalogue: true, dirs: []dir{{sub: "."}}}
	dirs := map[string]int{".": 0}
	names := map[string]bool{}
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
		p.files++
		p.bytes += f.Bytes
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
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

// FileOfDID resolves cmd's file DID into its path on the storage, for a
// method that links or serves one source; a dataset or container is not
// taken by these methods yet.
func (s *Stager) FileOfDID(ctx context.Context, cmd contract.Command) (contract.Command, error) {
	p, err := s.planDID(ctx, cmd)
	if err != nil {
		return cmd, err
	}
	if p.tree {
		return cmd, contract.Errorf(contract.CodeInvalidPath, "%s is a dataset or container; %s takes a file DID, local_copy takes every kind", cmd.DID, cmd.Method)
	}
	cmd.LocalPathOnStorage = p.top
	return cmd, nil
}

func didMessage(cmd contract.Command) string {
	if cmd.DID == "" {
		return ""
	}
	return fmt.Sprintf(" of %s", cmd.DID)
}
