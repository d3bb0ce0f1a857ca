package jupytercopy

import (
	"context"
	"fmt"
	"hash"
	"io"
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

// planDID lists the files of did: a file DID is the item itself; a dataset
// or a container a directory of its files under their names, a '/' in a
// name making subdirectories (every directory before what it holds). Each
// file is found on the storage through os.Root and its size checked
// against the catalogue's (rucio.Locate).
func (c *Copier) planDID(ctx context.Context, did string) ([]item, int64, error) {
	if c.Rucio == nil {
		return nil, 0, contract.Errorf(contract.CodeMethodNotAllowed, "staging by DID is not set up at this site (STAGING_RUCIO_URL)")
	}
	kind, err := c.Rucio.Kind(ctx, did)
	if err != nil {
		return nil, 0, err
	}
	var items []item
	var total int64
	if kind != rucio.KindFile {
		items = append(items, item{rel: ".", dir: true})
	}
	dirs := map[string]bool{".": true}
	names := map[string]bool{}
	err = c.Rucio.Files(ctx, did, func(f rucio.File) error {
		src, err := rucio.Locate(c.Source, f)
		if err != nil {
			return err
		}
		if kind == rucio.KindFile {
			items = append(items, item{rel: ".", src: src, size: f.Bytes, cat: &f})
			total += f.Bytes
			return nil
		}
		if err := rucio.CheckName(did, f.Name); err != nil {
			return err
		}
		if names[f.Name] || dirs[f.Name] {
			return contract.Errorf(contract.CodeTargetConflict, "%s holds two entries named %s", did, f.Name)
		}
		names[f.Name] = true
		var parents []string
		for d := path.Dir(f.Name); !dirs[d]; d = path.Dir(d) {
			if names[d] {
				return contract.Errorf(contract.CodeTargetConflict, "%s holds a file named %s and files below %s/", did, d, d)
			}
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			items = append(items, item{rel: parents[i], dir: true})
		}
		items = append(items, item{rel: f.Name, src: src, size: f.Bytes, cat: &f})
		total += f.Bytes
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if kind == rucio.KindFile && len(items) != 1 {
		return nil, 0, contract.Errorf(contract.CodeReplicaUnavailable, "rucio lists %d files for the file DID %s", len(items), did)
	}
	return items, total, nil
}

// sources lists the storage paths of the files among items, in order.
func sources(items []item) []string {
	var out []string
	for _, it := range items {
		if !it.dir {
			out = append(out, it.src)
		}
	}
	return out
}

// summed hands the data the upload reads, in order, to an adler32: what
// was sent is checked without reading the file again. An attempt starts
// again at offset 0, and so does the sum.
type summed struct {
	r    io.ReaderAt
	h    hash.Hash32
	next int64
}

func (s *summed) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.r.ReadAt(p, off)
	if off == 0 {
		s.h.Reset()
		s.next = 0
	}
	if off == s.next {
		s.h.Write(p[:n])
		s.next += int64(n)
	}
	return n, err
}

// check compares what was read with the catalogue's size and adler32.
func (s *summed) check(f rucio.File) error {
	if err := f.CheckSize(s.next); err != nil {
		return err
	}
	return f.CheckAdler32(fmt.Sprintf("%08x", s.h.Sum32()))
}
