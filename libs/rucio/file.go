package rucio

import (
	"fmt"
	"path"
	"strings"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// Locate finds f on the storage through os.Root, as a user's path is
// found, and checks that it is a regular file of the catalogue's size. It
// returns its path relative to the storage.
func Locate(src *storage.Root, f File) (string, error) {
	rel, fi, err := src.Stat(f.Path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", contract.Errorf(contract.CodeInvalidPath, "the replica of %s, %s, is not a regular file", f.Name, f.Path)
	}
	return rel, f.CheckSize(fi.Size())
}

// CheckSize fails with size_mismatch, naming the file, when n is not the
// catalogue's size.
func (f File) CheckSize(n int64) error {
	if n == f.Bytes {
		return nil
	}
	return contract.Errorf(contract.CodeSizeMismatch, "%s has %s on the storage, the catalogue says %s", f.Name, bytes(n), bytes(f.Bytes))
}

// CheckAdler32 fails with checksum_mismatch, naming the file, when sum is
// not the catalogue's adler32 (a catalogue without one checks nothing).
func (f File) CheckAdler32(sum string) error {
	if f.Adler32 == "" || sum == f.Adler32 {
		return nil
	}
	return contract.Errorf(contract.CodeChecksumMismatch, "the copy of %s has adler32 %s, the catalogue says %s", f.Name, sum, f.Adler32)
}

// CheckName refuses a file name of did that cannot be a path below the
// directory a dataset is staged as: Rucio allows names such as "../x" or
// "a//b", which must neither lead out of it nor name one file twice.
func CheckName(did, name string) error {
	if strings.HasPrefix(name, "/") || path.Clean(name) != name || name == "." || strings.ContainsRune(name, 0) {
		return contract.Errorf(contract.CodeInvalidPath, "%s holds a file named %q, which cannot be a path below the target", did, name)
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." {
			return contract.Errorf(contract.CodeInvalidPath, "%s holds a file named %q, which would lead out of the target", did, name)
		}
	}
	return nil
}

func bytes(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
