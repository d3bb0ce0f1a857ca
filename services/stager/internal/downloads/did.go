package downloads

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
)

// Catalogue lists the files of a Rucio DID on the site's RSE as the
// catalogue streams them (libs/rucio's Client).
type Catalogue interface {
	Files(ctx context.Context, did string, fn func(rucio.File) error) error
}

// ArchiveName is the name a DID's tar archive is downloaded as
// (<name>.tar) and the top directory of its entries: the last part of the
// DID's name, "ds1" for testsrc:ds1. A name ending in "." or ".." is
// refused: its entries would lead out of the directory the archive is
// unpacked in.
func ArchiveName(did string) (string, error) {
	_, name, err := contract.ValidateDID(did)
	if err != nil {
		return "", err
	}
	base := path.Base(name)
	if base == "." || base == ".." || base == "/" {
		return "", contract.Errorf(contract.CodeInvalidPath, "%s has no name a tar archive's entries can start with", did)
	}
	return base, nil
}

// writeDIDTar streams the files of did as a tar archive whose entries
// start with top: each file at its name below top, a '/' in a name making
// subdirectories, whose entries come before the first file in them. The
// catalogue's list of the files is kept on disk (listDID), and the files
// are sent one at a time from it, so memory grows with the DID's
// directories, not with its files. Each is checked again as when the link
// was issued: its name (rucio.CheckName), its replica found through the
// storage's os.Root (rucio.Locate), its size the catalogue's, which its
// header gives; its adler32 is computed as it is sent and compared with
// the catalogue's. Any failure ends the archive there, with an error
// naming the file. begin is called before the first byte is written:
// until then, the caller may still answer an error.
func (h *Handler) writeDIDTar(ctx context.Context, w io.Writer, did, top string, begin func()) (files int, err error) {
	if h.rucio == nil {
		return 0, contract.Errorf(contract.CodeMethodNotAllowed, "downloads by DID are not set up at this site (STAGING_RUCIO_URL)")
	}
	list, err := h.listDID(ctx, did)
	if err != nil {
		return 0, err
	}
	defer list.Close()
	tw := tar.NewWriter(w)
	// The directories made of the names have no times of their own.
	now := time.Now()
	dirs := map[string]bool{}
	dec := json.NewDecoder(bufio.NewReader(list))
	for {
		var f rucio.File
		if err := dec.Decode(&f); err == io.EOF {
			break
		} else if err != nil {
			return files, fmt.Errorf("read the list of the files of %s: %w", did, err)
		}
		if dirs[f.Name] {
			return files, contract.Errorf(contract.CodeTargetConflict, "%s holds a file named %s and files below %s/", did, f.Name, f.Name)
		}
		in, fi, err := h.openReplica(f)
		if err != nil {
			return files, err
		}
		if files == 0 {
			begin()
		}
		err = sendFile(tw, dirs, top, f, in, fi.Mode().Perm(), fi.ModTime(), now)
		in.Close()
		if err != nil {
			return files, fmt.Errorf("%s of %s: %w", f.Name, did, err)
		}
		files++
	}
	return files, tw.Close()
}

// listDID writes the catalogue's list of the files of did, their names
// checked, to an unnamed temporary file, one JSON line each, and returns
// it rewound. The list is read whole before anything is sent: a call to
// Rucio may last STAGING_RUCIO_TIMEOUT at most, and holds one of its
// server's workers, however slowly the client downloads; and on disk it
// takes no memory, however many files the DID holds.
func (h *Handler) listDID(ctx context.Context, did string) (*os.File, error) {
	list, err := os.CreateTemp("", "staging-did-*")
	if err != nil {
		return nil, fmt.Errorf("list the files of %s: %w", did, err)
	}
	// Unnamed at once: its space is freed when it is closed, or when the
	// process ends.
	if err := os.Remove(list.Name()); err != nil {
		list.Close()
		return nil, fmt.Errorf("list the files of %s: %w", did, err)
	}
	bw := bufio.NewWriter(list)
	enc := json.NewEncoder(bw)
	err = h.rucio.Files(ctx, did, func(f rucio.File) error {
		if err := rucio.CheckName(did, f.Name); err != nil {
			return err
		}
		return enc.Encode(f)
	})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = list.Seek(0, io.SeekStart)
	}
	if err != nil {
		list.Close()
		return nil, err
	}
	return list, nil
}

// sendFile writes the entries of the directories of f not in dirs yet,
// then f's entry, of the catalogue's size, and its data from in, whose
// adler32 must be the catalogue's.
func sendFile(tw *tar.Writer, dirs map[string]bool, top string, f rucio.File, in io.Reader, mode fs.FileMode, mtime, now time.Time) error {
	if err := tarDirs(tw, dirs, top, path.Dir(f.Name), now); err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: top + "/" + f.Name, Size: f.Bytes, Mode: int64(mode), ModTime: mtime}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	sum := adler32.New()
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	n, err := io.CopyBuffer(io.MultiWriter(tw, sum), io.LimitReader(in, f.Bytes), *buf)
	if err != nil {
		return err
	}
	if err := f.CheckSize(n); err != nil {
		return err
	}
	return f.CheckAdler32(fmt.Sprintf("%08x", sum.Sum32()))
}

// openReplica opens the replica of f through the storage's os.Root and
// checks that it is still a regular file of the catalogue's size.
func (h *Handler) openReplica(f rucio.File) (*os.File, fs.FileInfo, error) {
	rel, err := rucio.Locate(h.source, f)
	if err != nil {
		return nil, nil, err
	}
	// Not blocking on a FIFO put in the file's place since it was found.
	in, err := h.source.OS().OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, storage.SourceError(rel, err)
	}
	fi, err := in.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = contract.Errorf(contract.CodeInvalidPath, "the replica of %s, %s, is not a regular file", f.Name, f.Path)
	}
	if err == nil {
		err = f.CheckSize(fi.Size())
	}
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, fi, nil
}

// tarDirs writes the entries of directory sub below top and of its
// parents, parents first (top itself first of all), those not in dirs yet,
// and adds them to dirs.
func tarDirs(tw *tar.Writer, dirs map[string]bool, top, sub string, mtime time.Time) error {
	if dirs[sub] {
		return nil
	}
	name := top + "/"
	if sub != "." {
		if err := tarDirs(tw, dirs, top, path.Dir(sub), mtime); err != nil {
			return err
		}
		name = top + "/" + sub + "/"
	}
	dirs[sub] = true
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime})
}
