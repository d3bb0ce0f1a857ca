package hubclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// Entry is the Contents API model of a file or directory, without content.
type Entry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Type string `json:"type"` // "file", "directory" or "notebook"
	Size *int64 `json:"size"`
}

// contentsError maps a Contents API answer that is not a success. The
// proxy redirects (302) to the hub when the user's server is not running,
// the hub then answers 424, and a PUT or PATCH it cannot route gets 405.
func contentsError(what string, resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect,
		http.StatusFailedDependency, http.StatusMethodNotAllowed:
		return fmt.Errorf("%s: %w", what, ErrServerNotRunning)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case http.StatusConflict:
		return contract.Errorf(contract.CodeTargetConflict, "%s: %s", what, hubMessage(resp))
	}
	return statusError(what, resp)
}

// Stat returns the entry at p in user's server, or an error wrapping
// ErrNotFound.
func (c *Client) Stat(ctx context.Context, user, p string) (Entry, error) {
	resp, err := c.call(ctx, http.MethodGet, c.contentsURL(user, p)+"?content=0", "contents_get", nil)
	if err != nil {
		return Entry{}, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return Entry{}, contentsError("stat "+p, resp)
	}
	var e Entry
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return Entry{}, contract.Errorf(CodeUnavailable, "stat %s: undecodable answer: %v", p, err)
	}
	return e, nil
}

// Exists reports whether something is at p in user's server.
func (c *Client) Exists(ctx context.Context, user, p string) (bool, error) {
	_, err := c.Stat(ctx, user, p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// List returns the entries of directory p.
func (c *Client) List(ctx context.Context, user, p string) ([]Entry, error) {
	resp, err := c.call(ctx, http.MethodGet, c.contentsURL(user, p)+"?content=1", "contents_get", nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, contentsError("list "+p, resp)
	}
	var d struct {
		Type    string  `json:"type"`
		Content []Entry `json:"content"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, contract.Errorf(CodeUnavailable, "list %s: undecodable answer: %v", p, err)
	}
	if d.Type != "directory" {
		return nil, contract.Errorf(contract.CodeTargetConflict, "list %s: not a directory", p)
	}
	return d.Content, nil
}

// Mkdir creates directory p (its parent must exist). An existing directory
// is not an error; anything else at p is a target_conflict.
func (c *Client) Mkdir(ctx context.Context, user, p string) error {
	e, err := c.Stat(ctx, user, p)
	switch {
	case err == nil && e.Type == "directory":
		return nil
	case err == nil:
		return contract.Errorf(contract.CodeTargetConflict, "%s exists and is not a directory", p)
	case !errors.Is(err, ErrNotFound):
		return err
	}
	resp, err := c.call(ctx, http.MethodPut, c.contentsURL(user, p), "contents_put", map[string]string{"type": "directory"})
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return contentsError("create directory "+p, resp)
	}
	return nil
}

// MkdirAll creates directory p and its missing parents, one level per
// request as the Contents API requires.
func (c *Client) MkdirAll(ctx context.Context, user, p string) error {
	p = path.Clean("/" + p)[1:]
	if p == "" {
		return nil
	}
	if ok, err := c.isDir(ctx, user, p); err != nil || ok {
		return err
	}
	if err := c.MkdirAll(ctx, user, path.Dir(p)); err != nil {
		return err
	}
	return c.Mkdir(ctx, user, p)
}

func (c *Client) isDir(ctx context.Context, user, p string) (bool, error) {
	e, err := c.Stat(ctx, user, p)
	switch {
	case err == nil && e.Type == "directory":
		return true, nil
	case err == nil:
		return false, contract.Errorf(contract.CodeTargetConflict, "%s exists and is not a directory", p)
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// Rename moves from to to; it fails with target_conflict when to exists.
func (c *Client) Rename(ctx context.Context, user, from, to string) error {
	resp, err := c.call(ctx, http.MethodPatch, c.contentsURL(user, from), "contents_patch", map[string]string{"path": to})
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return contentsError("rename "+from+" to "+to, resp)
	}
	return nil
}

// Delete removes the file or empty directory p; a missing p is not an
// error.
func (c *Client) Delete(ctx context.Context, user, p string) error {
	resp, err := c.call(ctx, http.MethodDelete, c.contentsURL(user, p), "contents_delete", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK, http.StatusNotFound:
		return nil
	}
	return contentsError("delete "+p, resp)
}

// RemoveAll removes p and, for a directory, everything below it, deepest
// first: the Contents API refuses to delete a directory that is not empty.
func (c *Client) RemoveAll(ctx context.Context, user, p string) error {
	e, err := c.Stat(ctx, user, p)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	if e.Type == "directory" {
		children, err := c.List(ctx, user, p)
		if err != nil {
			return err
		}
		for _, ch := range children {
			if err := c.RemoveAll(ctx, user, path.Join(p, ch.Name)); err != nil {
				return err
			}
		}
	}
	return c.Delete(ctx, user, p)
}

// TempNameExtra is how many bytes longer than p's name TempName's is.
const TempNameExtra = len(".staging-") + 8 + len(".part")

// TempName is a fresh temporary name for an upload to p, in the same
// directory: "<name>.staging-<8 hex>.part". Not a dot-file: the Contents
// API refuses those by default.
func TempName(p string) (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("temporary name: %w", err)
	}
	return p + ".staging-" + hex.EncodeToString(b) + ".part", nil
}

// Upload writes the size bytes of src to p in user's server through a
// temporary file beside p, renamed into place when complete, so p never
// holds a partial file. The temporary file is removed when the upload
// fails. progress (may be nil) is told of the bytes sent after each piece.
// An existing p makes the rename fail with target_conflict.
func (c *Client) Upload(ctx context.Context, user, p string, src io.ReaderAt, size int64, progress func(sent int64)) error {
	tmp, err := TempName(p)
	if err != nil {
		return err
	}
	err = c.PutFile(ctx, user, tmp, src, size, progress)
	if err == nil {
		err = c.Rename(ctx, user, tmp, p)
	}
	if err != nil {
		// The request's ctx may be what ended: clean up on a short one of
		// our own.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := c.Delete(dctx, user, tmp); derr != nil {
			return errors.Join(err, fmt.Errorf("remove partial upload %s: %w", tmp, derr))
		}
		return err
	}
	return nil
}

// PutFile writes the size bytes of src to p in user's server as base64, in
// pieces of the client's chunk size: chunk 1 creates or truncates p, 2, 3,
// ... append, -1 appends the last piece; a file of one piece is sent
// without a chunk number. While it runs, p holds a partial file: see
// Upload. Each request body is streamed, so memory use does not grow with
// the chunk size.
func (c *Client) PutFile(ctx context.Context, user, p string, src io.ReaderAt, size int64, progress func(sent int64)) error {
	if size <= c.chunkSize {
		if err := c.putWhole(ctx, user, p, 0, io.NewSectionReader(src, 0, size), size); err != nil {
			return err
		}
		if progress != nil {
			progress(size)
		}
		return nil
	}
	n := (size + c.chunkSize - 1) / c.chunkSize
	for i := range n {
		chunk := int(i + 1)
		if i == n-1 {
			chunk = -1
		}
		off := i * c.chunkSize
		length := min(c.chunkSize, size-off)
		if err := c.putWhole(ctx, user, p, chunk, io.NewSectionReader(src, off, length), length); err != nil {
			return err
		}
		if progress != nil {
			progress(off + length)
		}
	}
	return nil
}

// pieceGrace is how long a piece already on its way may take to end once
// its upload is cancelled.
const pieceGrace = 10 * time.Second

// putWhole is putPiece for a piece that, once begun, is let end: a piece
// abandoned mid-request can still be written by the server after the
// cleanup that follows a cancel, and leave a file behind. A cancelled ctx
// starts no new piece, and cuts one in flight only after pieceGrace.
func (c *Client) putWhole(ctx context.Context, user, p string, chunk int, r io.Reader, length int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(pieceGrace, cancel) })
	defer stop()
	if err := c.putPiece(pctx, user, p, chunk, r, length); err != nil {
		return err
	}
	return ctx.Err()
}

// putPiece sends one PUT whose JSON body carries length bytes of r as
// base64, encoded while the body is sent. chunk 0 means no chunk field.
func (c *Client) putPiece(ctx context.Context, user, p string, chunk int, r io.Reader, length int64) error {
	head := `{"type":"file","format":"base64",`
	if chunk != 0 {
		head += `"chunk":` + strconv.Itoa(chunk) + `,`
	}
	head += `"content":"`
	const tail = `"}`

	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeBody(pw, head, tail, r)
		pw.CloseWithError(err)
		written <- err
	}()
	// Closing the reader unblocks the writer when the request ends before
	// the body is sent; then the writer's error says whether the source
	// failed.
	finish := func() error {
		pr.Close()
		if err := <-written; errors.Is(err, errSourceRead) {
			return err
		}
		return nil
	}

	req, err := c.newRequest(ctx, http.MethodPut, c.contentsURL(user, p), pr)
	if err != nil {
		pr.Close()
		<-written
		return err
	}
	req.ContentLength = int64(len(head)) + int64(base64.StdEncoding.EncodedLen(int(length))) + int64(len(tail))
	what := fmt.Sprintf("upload %s chunk %d", p, chunk)
	resp, err := c.do(req, "contents_put")
	if err != nil {
		if serr := finish(); serr != nil {
			return serr
		}
		return c.uploadFailed(ctx, user, p, what, err)
	}
	defer drain(resp)
	if serr := finish(); serr != nil {
		return serr
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		return nil
	case http.StatusServiceUnavailable, http.StatusBadRequest:
		// An oversized body makes the server drop the connection: the
		// proxy answers 503 or, when it notices early, 400 without a body.
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body = io.NopCloser(bytes.NewReader(data))
		err := contentsError(what, resp)
		if resp.StatusCode == http.StatusBadRequest && len(bytes.TrimSpace(data)) > 0 {
			return err
		}
		return c.uploadFailed(ctx, user, p, what, err)
	}
	return contentsError(what, resp)
}

// errSourceRead marks a failure to read the data being uploaded.
var errSourceRead = errors.New("read source")

// writeBody writes the JSON body of one piece to w. The base64 encoder
// writes 1 KiB at a time; the buffer in front of the pipe turns that into
// large writes, so the pipe's hand-offs do not limit the throughput.
func writeBody(pw io.Writer, head, tail string, r io.Reader) error {
	w := bufio.NewWriterSize(pw, bodyBuffer)
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	enc := base64.NewEncoder(base64.StdEncoding, w)
	buf := make([]byte, 3*bodyBuffer/4) // a multiple of 3: no padding mid-stream
	if _, err := io.CopyBuffer(enc, sourceReader{r}, buf); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if _, err := io.WriteString(w, tail); err != nil {
		return err
	}
	return w.Flush()
}

// bodyBuffer sizes the buffers of an upload body.
const bodyBuffer = 256 << 10

// sourceReader marks the errors of reading the source, so they are told
// apart from the request's.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errSourceRead, err)
	}
	return n, err
}

// uploadFailed tells an oversized request body apart from an unreachable
// server: when the server still answers, the body was refused.
func (c *Client) uploadFailed(ctx context.Context, user, p, what string, err error) error {
	if ctx.Err() != nil || errors.Is(err, ErrServerNotRunning) {
		return err
	}
	if _, serr := c.Stat(ctx, user, path.Dir("/" + p)[1:]); serr != nil {
		return err
	}
	return fmt.Errorf("%w: %w", contract.Errorf(CodeBodyTooLarge,
		"%s: the server dropped a request of %d MiB; lower the chunk size (STAGING_JUPYTER_CHUNK_SIZE)", what, (4*c.chunkSize/3)>>20), err)
}
