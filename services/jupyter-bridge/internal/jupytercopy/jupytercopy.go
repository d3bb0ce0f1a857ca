// Package jupytercopy stages one item, a file or a directory tree, from the
// storage into a user's Jupyter server: it starts the server when it is
// down, leaves an existing target untouched, and uploads so that the target
// name only ever holds complete data: a file through a temporary name
// renamed into place, a tree inside a temporary directory renamed into
// place once every file is in.
package jupytercopy

import (
	"context"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
)

// Copier stages items from one storage mount.
type Copier struct {
	Source *storage.Root
	// SpawnTimeout bounds each wait for the user's server to start.
	SpawnTimeout time.Duration
	// Attempts bounds the uploads of one file when the server or the hub
	// fails on the way (default 3); each attempt restarts the file from
	// its first piece.
	Attempts int
	// RetryDelay is the first pause between attempts (default 1 s),
	// doubled after each.
	RetryDelay time.Duration
	// Rucio resolves the DID a request names (nil: a request by DID is
	// refused).
	Rucio Catalogue
}

// Request is one item to stage.
type Request struct {
	Username string
	// Source is the local_path_on_storage of the request.
	Source string
	// DID is the request's Rucio DID, instead of Source.
	DID string
	// Resolved, when set, receives the files DID was resolved into (paths
	// relative to the storage root, in the order Rucio listed them, and
	// their total size) before the user's server is touched; its error
	// fails the copy.
	Resolved func(paths []string, bytes int64) error
	// Target is the path in the user's server, relative to its root.
	Target string
}

// Result is what a successful Copy did.
type Result struct {
	Outcome contract.Outcome
	Bytes   int64
	Files   int64
	// ServerStarted reports that the user's server had to be started, and
	// StartDuration how long the first start took.
	ServerStarted bool
	StartDuration time.Duration
}

// Update reports how the staging goes: a message while the server starts,
// the bytes and files done while uploading.
type Update struct {
	Message  string
	Progress contract.Progress
}

// item is one entry of the source: a directory to create or a file to
// upload, at path rel under the item's root.
type item struct {
	rel  string // relative to the staged item; "." is the item itself
	src  string // relative to the storage root
	dir  bool
	size int64
	// cat is what the catalogue says of a DID's file: the upload's size
	// and adler32 are checked against it.
	cat *rucio.File
}

// Copy stages req into the server hub reaches, reporting to report (which
// may be nil).
func (c *Copier) Copy(ctx context.Context, hub *hubclient.Client, req Request, report func(Update)) (Result, error) {
	if report == nil {
		report = func(Update) {}
	}
	target := path.Clean(req.Target)
	if err := checkNames(target); err != nil {
		return Result{}, err
	}
	items, total, err := c.planSource(ctx, req)
	if err != nil {
		return Result{}, err
	}
	prog := contract.Progress{BytesTotal: total}
	for _, it := range items {
		if !it.dir {
			prog.FilesTotal++
		}
	}

	began := time.Now()
	started, err := c.ensureRunning(ctx, hub, req.Username, report)
	if err != nil {
		return Result{}, err
	}
	res := Result{ServerStarted: started}
	if started {
		res.StartDuration = time.Since(began)
	}
	exists, err := c.retry(ctx, hub, req.Username, report, &res, func() (bool, error) {
		return hub.Exists(ctx, req.Username, target)
	})
	if err != nil {
		return res, fmt.Errorf("check target %s: %w", target, err)
	}
	if exists {
		res.Outcome = contract.OutcomeAlreadyPresent
		return res, nil
	}
	if _, err := c.retry(ctx, hub, req.Username, report, &res, func() (bool, error) {
		return false, hub.MkdirAll(ctx, req.Username, path.Dir(target))
	}); err != nil {
		return res, fmt.Errorf("create parent of %s: %w", target, err)
	}

	if !items[0].dir {
		err = c.uploadFile(ctx, hub, req.Username, items[0], target, true, &prog, report, &res)
	} else {
		err = c.uploadTree(ctx, hub, req.Username, items, target, &prog, report, &res)
	}
	if err != nil {
		return res, err
	}
	res.Outcome, res.Bytes, res.Files = contract.OutcomeStaged, prog.BytesDone, prog.FilesDone
	return res, nil
}

// maxName is the longest file name (bytes) the filesystems of users'
// servers take (NAME_MAX).
const maxName = 255

// checkNames refuses a target with a name no filesystem takes, before the
// user's server is started: its server would answer with a 500 that reads
// like an outage, and the request would be retried for nothing. The last
// name must leave room for the temporary name it is uploaded under.
func checkNames(target string) error {
	dir, name := path.Split(target)
	for part := range strings.SplitSeq(strings.TrimSuffix(dir, "/"), "/") {
		if len(part) > maxName {
			return contract.Errorf(contract.CodeInvalidPath, "relative_path %q has a directory name of %d bytes; the longest a filesystem takes is %d", target, len(part), maxName)
		}
	}
	if len(name)+hubclient.TempNameExtra > maxName {
		return contract.Errorf(contract.CodeInvalidPath, "relative_path %q ends in a name of %d bytes; jupyter_copy takes at most %d (%d less than a filesystem's %d, for the temporary name of the upload)", target, len(name), maxName-hubclient.TempNameExtra, hubclient.TempNameExtra, maxName)
	}
	return nil
}

// planSource plans the upload of the request's path, or of its DID's files
// (reported to req.Resolved).
func (c *Copier) planSource(ctx context.Context, req Request) ([]item, int64, error) {
	if req.DID != "" {
		items, total, err := c.planDID(ctx, req.DID)
		if err == nil && req.Resolved != nil {
			err = req.Resolved(sources(items), total)
		}
		return items, total, err
	}
	return c.plan(req.Source)
}

// plan lists what the source holds, the item itself first and every
// directory before what it contains, with the total of the file sizes.
// Symbolic links are followed inside the storage; one to a directory inside
// a tree is skipped, so a link cycle cannot make the walk endless.
func (c *Copier) plan(source string) ([]item, int64, error) {
	rel, fi, err := c.Source.Stat(source)
	if err != nil {
		return nil, 0, err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, 0, contract.Errorf(contract.CodeInvalidPath, "%s is neither a file nor a directory", source)
		}
		return []item{{rel: ".", src: rel, size: fi.Size()}}, fi.Size(), nil
	}
	var items []item
	var total int64
	fsys := c.Source.OS().FS()
	err = fs.WalkDir(fsys, rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return storage.SourceError(p, err)
		}
		sub := "."
		if p != rel {
			sub = p[len(rel)+1:]
		}
		switch {
		case d.IsDir():
			items = append(items, item{rel: sub, src: p, dir: true})
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			fi, err := c.Source.OS().Stat(p)
			if err != nil {
				return storage.SourceError(p, err)
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
			items = append(items, item{rel: sub, src: p, size: fi.Size()})
			total += fi.Size()
			return nil
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return storage.SourceError(p, err)
			}
			items = append(items, item{rel: sub, src: p, size: fi.Size()})
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return items, total, nil
}

func (c *Copier) ensureRunning(ctx context.Context, hub *hubclient.Client, user string, report func(Update)) (bool, error) {
	return hub.EnsureRunning(ctx, user, c.SpawnTimeout, func(p hubclient.Progress) {
		if p.Message != "" {
			report(Update{Message: "jupyter server: " + p.Message})
		}
	})
}

// retry runs op until it succeeds or fails for good, up to Attempts times,
// starting the user's server again when it stopped.
func (c *Copier) retry(ctx context.Context, hub *hubclient.Client, user string, report func(Update), res *Result, op func() (bool, error)) (bool, error) {
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	delay := c.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	// Attempts bound the pauses; the cap only keeps a wrong setting sane.
	pauses, delays := 0, backoff.Exponential{Base: delay, Max: time.Hour}
	for attempt := 1; ; attempt++ {
		v, err := op()
		if err == nil || !hubclient.Retryable(err) || attempt >= attempts || ctx.Err() != nil {
			return v, err
		}
		if errors.Is(err, hubclient.ErrServerNotRunning) {
			started, serr := c.ensureRunning(ctx, hub, user, report)
			if serr != nil {
				return v, errors.Join(err, serr)
			}
			res.ServerStarted = res.ServerStarted || started
			continue
		}
		pauses++
		if backoff.Wait(ctx, delays.Delay(pauses)) != nil {
			return v, err
		}
	}
}

// uploadFile uploads one file to dst: through a temporary name when atomic,
// directly when dst lies in a temporary tree. A failed attempt restarts the
// file from its first piece: pieces after the first append, so resending
// one would duplicate data. A DID's file is checked against the
// catalogue's size and adler32 as it is sent; a single one under a
// temporary name, renamed into place only once it matches.
func (c *Copier) uploadFile(ctx context.Context, hub *hubclient.Client, user string, it item, dst string, atomic bool,
	prog *contract.Progress, report func(Update), res *Result) (err error) {
	f, err := c.Source.OS().Open(it.src)
	if err != nil {
		return storage.SourceError(it.src, err)
	}
	defer f.Close()
	var in io.ReaderAt = f
	var sum *summed
	to := dst
	if it.cat != nil {
		sum = &summed{r: f, h: adler32.New()}
		in = sum
		if atomic {
			if to, err = hubclient.TempName(dst); err != nil {
				return err
			}
			atomic = false
			defer func() {
				if err == nil {
					return
				}
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if derr := hub.RemoveAll(dctx, user, to); derr != nil {
					err = errors.Join(err, fmt.Errorf("remove partial upload %s: %w", to, derr))
				}
			}()
		}
	}
	base := prog.BytesDone
	sent := func(n int64) {
		prog.BytesDone = base + n
		report(Update{Progress: *prog})
	}
	_, err = c.retry(ctx, hub, user, report, res, func() (bool, error) {
		prog.BytesDone = base
		if atomic {
			return false, hub.Upload(ctx, user, to, in, it.size, sent)
		}
		return false, hub.PutFile(ctx, user, to, in, it.size, sent)
	})
	if err != nil {
		return fmt.Errorf("upload %s to %s: %w", it.src, dst, err)
	}
	if sum != nil {
		if err := sum.check(*it.cat); err != nil {
			return err
		}
	}
	if to != dst {
		if _, err := c.retry(ctx, hub, user, report, res, func() (bool, error) {
			return false, hub.Rename(ctx, user, to, dst)
		}); err != nil {
			return fmt.Errorf("move %s into place: %w", dst, err)
		}
	}
	prog.BytesDone = base + it.size
	prog.FilesDone++
	report(Update{Progress: *prog})
	return nil
}

// uploadTree uploads a directory into a temporary directory beside target
// and renames it into place; on failure it removes the temporary tree.
func (c *Copier) uploadTree(ctx context.Context, hub *hubclient.Client, user string, items []item, target string,
	prog *contract.Progress, report func(Update), res *Result) (err error) {
	tmp, err := hubclient.TempName(target)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := hub.RemoveAll(dctx, user, tmp); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove partial tree %s: %w", tmp, derr))
		}
	}()
	for _, it := range items {
		dst := path.Join(tmp, it.rel)
		if it.dir {
			if _, err := c.retry(ctx, hub, user, report, res, func() (bool, error) {
				return false, hub.Mkdir(ctx, user, dst)
			}); err != nil {
				return fmt.Errorf("create directory %s: %w", dst, err)
			}
			continue
		}
		if err := c.uploadFile(ctx, hub, user, it, dst, false, prog, report, res); err != nil {
			return err
		}
	}
	if _, err := c.retry(ctx, hub, user, report, res, func() (bool, error) {
		return false, hub.Rename(ctx, user, tmp, target)
	}); err != nil {
		return fmt.Errorf("move %s into place: %w", target, err)
	}
	return nil
}
