package main

import (
	"context"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// maxResumes bounds the resumes of one download after its connection broke.
const maxResumes = 5

type downloadOptions struct {
	output  string
	adler32 string
}

func (a *app) downloadCommand() *cobra.Command {
	var o downloadOptions
	cmd := &cobra.Command{
		Use:   "download ID|URL [-o PATH]",
		Short: "Download the file behind a direct_download link, with resume",
		Long: `Download what a direct_download request made available: give the request's
ID (stagectl looks its link up) or the link itself (a URL or the path
/api/v1/downloads/...). A file is saved under its own name in the current
directory unless -o names a file or a directory (-o - writes to stdout); a
directory, or a Rucio dataset or container, arrives as a tar archive.

The data goes to PATH.part first and is renamed to PATH when complete. If
the connection breaks, the download resumes where it stopped (HTTP Range),
and running the same command again after an interruption resumes the .part
file instead of starting over.

When the server reported an adler32 checksum for the request, or --adler32
gives one, the file is checked against it; a mismatch removes the download
and exits with checksum_mismatch.

Exit code: 0 downloaded (and checked), 1 no link, link expired or unknown,
checksum mismatch or file not writable, 3 the server could not be reached.`,
		Example: `  stagectl download 6c1f2d7e-0b8a-4f4e-9a51-2f0c1e7d9b3a
  stagectl download 6c1f2d7e-0b8a-4f4e-9a51-2f0c1e7d9b3a -o data/
  stagectl download http://localhost:8080/api/v1/downloads/TOKEN -o vis.tar --adler32 0a1b2c3d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.download(cmd.Context(), args[0], o)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "file or directory to save to (- for stdout)")
	cmd.Flags().StringVar(&o.adler32, "adler32", "", "expected adler32 checksum (8 hex digits) to check the file against")
	return cmd
}

// downloaded is download's --json output.
type downloaded struct {
	Path         string `json:"path"`
	Bytes        int64  `json:"bytes"`
	ResumedFrom  int64  `json:"resumed_from,omitempty"`
	Adler32      string `json:"adler32,omitempty"`
	Adler32Check bool   `json:"adler32_checked"`
}

func (a *app) download(ctx context.Context, ref string, o downloadOptions) error {
	if o.output == "-" && a.json {
		return usagef("-o - writes the file to stdout, where --json would write too: give one of them")
	}
	link, want, err := a.downloadLink(ctx, ref)
	if err != nil {
		return err
	}
	if o.adler32 != "" {
		want = strings.ToLower(o.adler32)
	}
	// HEAD tells the file's name before anything is written.
	head, err := a.c.do(ctx, http.MethodHead, link, nil, nil)
	var se *serverError
	if errors.As(err, &se) && se.Code == "" {
		// An answer to HEAD has no body to carry the error's code: GET
		// reads it (a refused link sends nothing more).
		var get *http.Response
		if get, err = a.c.do(ctx, http.MethodGet, link, nil, nil); err == nil {
			get.Body.Close()
			err = failf("the server refused HEAD %s but not GET", link)
		}
	}
	if err != nil {
		return err
	}
	head.Body.Close()
	if want == "" {
		want = digestAdler32(head.Header)
	}

	dst := outputPath(o.output, head)
	if dst == "-" {
		return a.fetchStdout(ctx, link, want)
	}
	res, err := a.fetchFile(ctx, link, dst, want)
	if err != nil {
		return err
	}
	if a.json {
		return writeJSON(a.stdout, res)
	}
	check := ""
	if res.Adler32Check {
		check = ", adler32 " + res.Adler32 + " checked"
	}
	resumed := ""
	if res.ResumedFrom > 0 {
		resumed = fmt.Sprintf(", resumed at %s", size(res.ResumedFrom))
	}
	fmt.Fprintf(a.stdout, "saved %s (%s%s%s)\n", res.Path, size(res.Bytes), resumed, check)
	return nil
}

// downloadLink finds the link of ref (an ID, a URL or an API path) and the
// adler32 the server reported for it, if any.
func (a *app) downloadLink(ctx context.Context, ref string) (link, adler string, err error) {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "/") {
		return ref, "", nil
	}
	s, err := a.c.staging(ctx, ref)
	if err != nil {
		return "", "", err
	}
	if s.DownloadURL == "" {
		switch {
		case !s.finished():
			return "", "", failf("request %s is %s: its link comes when it succeeds (stagectl watch %s)", s.ID, s.Status, s.ID)
		case s.Method != "direct_download":
			return "", "", failf("request %s is %s, not direct_download: it has no download link", s.ID, s.Method)
		default:
			return "", "", failf("request %s has no download link (%s)", s.ID, statusText(s))
		}
	}
	return s.DownloadURL, s.Adler32, nil
}

// digestAdler32 reads an RFC 3230 Digest header's adler32, as dCache and
// other storage systems send it.
func digestAdler32(h http.Header) string {
	for _, d := range strings.Split(h.Get("Digest"), ",") {
		if alg, v, ok := strings.Cut(strings.TrimSpace(d), "="); ok && strings.EqualFold(alg, "adler32") {
			return strings.ToLower(v)
		}
	}
	return ""
}

// outputPath is where to save: -o as given (a directory gets the server's
// file name), else the server's file name here.
func outputPath(output string, head *http.Response) string {
	if output == "-" {
		return output
	}
	name := ""
	if _, params, err := mime.ParseMediaType(head.Header.Get("Content-Disposition")); err == nil {
		name = filepath.Base(filepath.Clean("/" + params["filename"]))
	}
	if name == "" || name == "/" || name == "." {
		name = path.Base(head.Request.URL.Path)
	}
	if output == "" {
		return name
	}
	if fi, err := os.Stat(output); (err == nil && fi.IsDir()) || strings.HasSuffix(output, string(os.PathSeparator)) {
		return filepath.Join(output, name)
	}
	return output
}

// fetchStdout writes link's body to stdout, checking its adler32 on the
// way (the bytes are out by then: a mismatch is the exit code's to say).
func (a *app) fetchStdout(ctx context.Context, link, want string) error {
	h := adler32.New()
	if _, err := a.fetch(ctx, link, stdoutSink{io.MultiWriter(a.stdout, h)}, 0); err != nil {
		return err
	}
	if got := fmt.Sprintf("%08x", h.Sum32()); want != "" && got != want {
		return checksumMismatch(got, want, "")
	}
	return nil
}

// checksumMismatch is the error of a download that is not what was
// expected.
func checksumMismatch(got, want, removed string) error {
	detail := fmt.Sprintf("the download has adler32 %s, expected %s", got, want)
	if removed != "" {
		detail += "; " + removed + " was removed, run the command again"
	}
	return &serverError{Status: http.StatusOK, apiError: apiError{Code: "checksum_mismatch", Detail: detail}}
}

// fetchFile downloads link into dst through dst.part, resuming a .part
// left by an interrupted run.
func (a *app) fetchFile(ctx context.Context, link, dst, want string) (downloaded, error) {
	part := dst + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return downloaded{}, failf("cannot write the download: %v", err)
	}
	defer f.Close()
	offset, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return downloaded{}, failf("cannot write the download: %v", err)
	}
	res, err := a.fetch(ctx, link, fileSink{f}, offset)
	if err != nil {
		return res, err
	}
	res.Path = dst
	if want != "" {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return res, failf("cannot read the download back: %v", err)
		}
		h := adler32.New()
		if _, err := io.Copy(h, f); err != nil {
			return res, failf("cannot read the download back: %v", err)
		}
		got := fmt.Sprintf("%08x", h.Sum32())
		if got != want {
			f.Close()
			os.Remove(part)
			return res, checksumMismatch(got, want, "the download")
		}
		res.Adler32, res.Adler32Check = got, true
	}
	if err := f.Close(); err != nil {
		return res, failf("cannot write the download: %v", err)
	}
	if err := os.Rename(part, dst); err != nil {
		return res, failf("cannot write the download: %v", err)
	}
	return res, nil
}

// sink is where fetch writes: a file, or stdout.
type sink interface {
	io.Writer
	// restart empties the sink for the whole file again.
	restart() error
}

type fileSink struct{ *os.File }

func (f fileSink) restart() error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

type stdoutSink struct{ io.Writer }

func (stdoutSink) restart() error {
	return errors.New("the server restarted the download from its start, which cannot be undone on stdout")
}

// fetch writes link's body to w, which already holds the first offset
// bytes; a broken connection is resumed with Range.
func (a *app) fetch(ctx context.Context, link string, w sink, offset int64) (downloaded, error) {
	res := downloaded{ResumedFrom: offset}
	var bar *mpb.Bar
	var p *mpb.Progress
	if a.tty && !a.json {
		p = mpb.New(mpb.WithOutput(a.stderr), mpb.WithRefreshRate(100*time.Millisecond))
		bar = p.New(0, mpb.BarStyle(),
			mpb.PrependDecorators(decor.Name("download", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
				decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WCSyncSpace), ""),
				decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), ""),
			))
		defer func() {
			if !bar.Completed() {
				bar.Abort(false)
			}
			p.Wait()
		}()
	}
	validator := "" // If-Range: resume only the same version of the file
	for resumes := 0; ; {
		hdr := http.Header{"Accept": {"*/*"}}
		if offset > 0 {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-", offset))
			if validator != "" {
				hdr.Set("If-Range", validator)
			}
		}
		resp, err := a.c.do(ctx, http.MethodGet, link, nil, hdr, http.StatusRequestedRangeNotSatisfiable)
		if err != nil {
			return res, err
		}
		switch resp.StatusCode {
		case http.StatusRequestedRangeNotSatisfiable:
			// Nothing after offset: the .part holds the whole file.
			resp.Body.Close()
			res.Bytes = offset
			if bar != nil {
				bar.SetTotal(offset, true)
			}
			return res, nil
		case http.StatusPartialContent:
			if start := rangeStart(resp.Header.Get("Content-Range")); start != offset {
				resp.Body.Close()
				return res, failf("the server resumed at byte %d, not %d", start, offset)
			}
		default:
			// The whole file: start over.
			if offset > 0 {
				if err := w.restart(); err != nil {
					resp.Body.Close()
					return res, failf("%v", err)
				}
				offset, res.ResumedFrom = 0, 0
			}
		}
		validator = resp.Header.Get("Last-Modified")
		var body io.Reader = resp.Body
		if bar != nil {
			if resp.ContentLength >= 0 {
				bar.SetTotal(offset+resp.ContentLength, false)
			}
			bar.SetCurrent(offset)
			if pr, err := bar.ProxyReader(resp.Body); err == nil {
				body = pr
			}
		}
		n, err := io.Copy(w, body)
		resp.Body.Close()
		offset += n
		if err == nil && (resp.ContentLength < 0 || n == resp.ContentLength) {
			res.Bytes = offset
			if bar != nil {
				bar.SetTotal(offset, true)
			}
			return res, nil
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return res, failf("cannot write the download: %v", pe.Err)
		}
		if n > 0 {
			resumes = 0
		}
		if resumes++; resumes > maxResumes {
			return res, &unreachableError{URL: a.c.base.String(), Reason: fmt.Sprintf("the download broke off %d times without progress", resumes)}
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Duration(resumes) * 200 * time.Millisecond):
		}
	}
}

// rangeStart reads the first byte of a Content-Range ("bytes 100-199/200").
func rangeStart(cr string) int64 {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return -1
	}
	first, _, _ := strings.Cut(spec, "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return -1
	}
	return n
}
