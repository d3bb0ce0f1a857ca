package downloads

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/libs/telemetry"
)

// Pattern is the route of a download link, for http.ServeMux.
const Pattern = "GET " + PathPrefix + "{token}"

// Handler serves links: a file with http.ServeContent (Range, If-Range,
// HEAD, conditional requests), a directory or a Rucio dataset or container
// as a tar archive streamed as it is read.
type Handler struct {
	store  *Store
	source *storage.Root
	// rucio lists the files of a DID's link (nil: no DID is served).
	rucio  Catalogue
	events *Reporter
	log    *slog.Logger
	tracer trace.Tracer
	bytes  prometheus.Counter
	mux    *http.ServeMux
	// sendfile keeps a file's body on the kernel's sendfile path; without
	// it the body is copied through a pooled buffer of BufferSize.
	sendfile bool
}

// BufferSize is the buffer a file's body is copied through when sendfile
// is off: large writes are what make the buffered path beat sendfile on
// the VMs where it does, as nginx's output_buffers do; 2 MiB matched nginx's
// own 1 MiB buffers where a smaller one did not (docs/benchmarks.md). Each
// download being served holds one.
const BufferSize = 2 << 20

var buffers = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// NewHandler returns the handler, with its metric registered on reg. With
// sendfile, file bodies go through sendfile(2); without, through a buffer
// of BufferSize. rucio lists the files of a DID's link (nil when the site
// has no Rucio). Each download's start and end go to events, and each
// download is a span of tracer.
func NewHandler(store *Store, source *storage.Root, rucio Catalogue, events *Reporter, log *slog.Logger, tracer trace.Tracer, reg prometheus.Registerer, sendfile bool) *Handler {
	h := &Handler{
		store:    store,
		source:   source,
		rucio:    rucio,
		events:   events,
		log:      log,
		tracer:   tracer,
		sendfile: sendfile,
		bytes: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "staging_stager_download_bytes_total",
			Help: "Bytes sent by the stager's download links.",
		}),
		mux: http.NewServeMux(),
	}
	h.mux.HandleFunc(Pattern, h.serve)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	link, err := h.store.Lookup(ctx, r.PathValue("token"))
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, contract.Errorf(contract.CodeNotFound, "this download link is unknown or has expired"))
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "download_lookup_failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, contract.Errorf(contract.CodeUnavailable, "download links cannot be looked up now"))
		return
	}
	// A download is part of the request that issued its link, however
	// much later: its span joins that request's trace, and links to the
	// trace of the HTTP request that asked for it (the gateway's). Its
	// download events travel in it, and so do their audit spans.
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(telemetry.AttrRequestID.String(link.RequestID))}
	if caller := trace.SpanContextFromContext(ctx); caller.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: caller}))
	}
	ctx, span := h.tracer.Start(telemetry.ContinueTrace(ctx, link.TraceID, link.SpanID), "stager.download", opts...)
	var cw *countingWriter
	files := 0
	defer func() {
		if cw != nil {
			span.SetAttributes(telemetry.AttrBytes.Int64(cw.n), telemetry.AttrFiles.Int(files))
		}
		span.End()
	}()
	log := h.log.With("request_id", link.RequestID, "username", link.Username)
	if link.DID != "" {
		log = log.With("did", link.DID)
	} else {
		log = log.With("path", link.Path)
	}
	// A path is opened through the storage's os.Root: it was checked when
	// the link was issued, and is checked again now, in case it changed. A
	// DID's files are found one by one as its archive is written.
	var f *os.File
	var fi fs.FileInfo
	if link.DID == "" {
		if f, fi = h.open(ctx, w, link, log); f == nil {
			return
		}
		defer f.Close()
	}
	// A download may outlast the server's write timeout: each write gets
	// one of its own, so only a client that stops reading is cut off.
	cw = &countingWriter{ResponseWriter: service.StreamWriter(w, r), sendfile: h.sendfile}
	defer func() { h.bytes.Add(float64(cw.n)) }()
	dl := &download{h: h, link: link, id: uuid.NewString()}
	span.SetAttributes(attribute.String("staging.download_id", dl.id))
	switch {
	case link.DID != "":
		name, err := ArchiveName(link.DID)
		if err != nil {
			writeError(w, http.StatusNotFound, contract.AsError(err))
			return
		}
		files = h.sendTar(ctx, cw, r, dl, log, name, func(w io.Writer, begin func()) (int, error) {
			return h.writeDIDTar(ctx, w, link.DID, name, begin)
		})
		if !dl.started {
			return
		}
	case fi.Mode().IsRegular():
		name := path.Base(link.Path)
		// The ranges are checked before ServeContent serves them, and only
		// their normalised form is logged and reported: the header is the
		// client's, of any length.
		var ranges string
		if h := r.Header.Get("Range"); h != "" {
			rs, err := parseRanges(h, fi.Size())
			if err != nil {
				log.InfoContext(ctx, "download_range_refused", "bytes", fi.Size(), "error", err)
				w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(fi.Size(), 10))
				writeError(w, http.StatusRequestedRangeNotSatisfiable, contract.AsError(err))
				return
			}
			ranges = normalizeRanges(rs)
		}
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		log.InfoContext(ctx, "download_started", "bytes", fi.Size(), "range", ranges)
		// ServeContent decides on Range, If-Range and the conditional
		// headers; the download starts when it sends a body.
		if r.Method != http.MethodHead {
			cw.onHeader = func(status int) {
				if status == http.StatusOK || status == http.StatusPartialContent {
					dl.start(ctx, w.Header(), status, ranges)
				}
			}
		}
		http.ServeContent(cw, r, name, fi.ModTime(), f)
		if dl.started {
			files = 1
		}
		dl.end(ctx, cw, nil)
	case fi.IsDir():
		files = h.sendTar(ctx, cw, r, dl, log, path.Base(link.Path), func(w io.Writer, begin func()) (int, error) {
			begin()
			return h.writeTar(w, link.Path, path.Base(link.Path))
		})
		if !dl.started {
			return
		}
	default:
		writeError(w, http.StatusNotFound, contract.Errorf(contract.CodeSourceNotFound, "%s is neither a file nor a directory", link.Path))
		return
	}
	log.InfoContext(ctx, "download_finished", "sent_bytes", cw.n)
}

// open opens the path of link and returns it with its FileInfo, or
// answers the error and returns nil.
func (h *Handler) open(ctx context.Context, w http.ResponseWriter, link Link, log *slog.Logger) (*os.File, fs.FileInfo) {
	f, err := h.source.OS().Open(link.Path)
	if err != nil {
		err = storage.SourceError(link.Path, err)
		log.WarnContext(ctx, "download_source_unavailable", "error", err)
		writeError(w, http.StatusNotFound, contract.AsError(err))
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		log.ErrorContext(ctx, "download_stat_failed", "error", err)
		writeError(w, http.StatusInternalServerError, contract.Errorf(contract.CodeIOError, "the source cannot be read"))
		return nil, nil
	}
	return f, fi
}

// sendTar answers with the tar archive write streams to cw, named
// name.tar, and returns how many files it sent whole. write calls begin
// before it writes anything: the download starts there. An error before
// then is answered as such (503 when Rucio cannot be reached, 500 for an
// error of the stager's own, else 404); after, the status is sent, and
// all that can be done is to cut the stream short, so the client sees a
// truncated archive. HEAD answers the headers alone.
func (h *Handler) sendTar(ctx context.Context, cw *countingWriter, r *http.Request, dl *download, log *slog.Logger,
	name string, write func(w io.Writer, begin func()) (int, error)) int {
	cw.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + ".tar"}))
	cw.Header().Set("Content-Type", "application/x-tar")
	if r.Method == http.MethodHead {
		return 0
	}
	begin := func() {
		log.InfoContext(ctx, "download_started", "archive", "tar")
		dl.start(ctx, cw.Header(), http.StatusOK, "")
	}
	files, err := write(cw, begin)
	switch {
	case err != nil && !dl.started:
		log.WarnContext(ctx, "download_source_unavailable", "error", err)
		status := http.StatusNotFound
		switch contract.CodeOf(err) {
		case contract.CodeRucioUnavailable:
			status = http.StatusServiceUnavailable
		case contract.CodeInternal, contract.CodeIOError:
			status = http.StatusInternalServerError
		}
		trace.SpanFromContext(ctx).SetStatus(codes.Error, string(contract.CodeOf(err)))
		cw.Header().Del("Content-Disposition")
		// Not counted as download bytes: nothing was downloaded.
		writeError(cw.ResponseWriter, status, contract.AsError(err))
	case err != nil:
		log.WarnContext(ctx, "download_archive_failed", "error", err)
		trace.SpanFromContext(ctx).SetStatus(codes.Error, "archive cut short")
		dl.end(ctx, cw, err)
		panic(http.ErrAbortHandler)
	default:
		dl.end(ctx, cw, nil)
	}
	return files
}

// download reports one download's start and end as download events.
type download struct {
	h       *Handler
	link    Link
	id      string
	started bool
	size    int64 // -1 when not known
	// ranges is the normalised Range of a partial response, reported on
	// its start and its end.
	ranges string
}

// start reports download_started for a response of status whose headers
// are hdr: the body is about to be sent. ranges is the normalised Range.
func (d *download) start(ctx context.Context, hdr http.Header, status int, ranges string) {
	if d.started {
		return
	}
	d.started = true
	d.size = -1
	if n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64); err == nil {
		d.size = n
	}
	ev := contract.DownloadEvent{Type: contract.DownloadStarted, DownloadID: d.id, Size: max(d.size, 0)}
	if status == http.StatusPartialContent {
		d.ranges = ranges
	}
	ev.Range = d.ranges
	d.report(ctx, ev)
}

// end reports how a started download ended: download_completed when the
// whole body went out, else download_failed, with the bytes sent either
// way. failure is what cut the body short, when the sender knows it.
func (d *download) end(ctx context.Context, cw *countingWriter, failure error) {
	if !d.started {
		return
	}
	ev := contract.DownloadEvent{Type: contract.DownloadCompleted, DownloadID: d.id, Bytes: cw.n, Range: d.ranges}
	short := d.size >= 0 && cw.n < d.size
	switch {
	case cw.err != nil || (ctx.Err() != nil && (failure != nil || short)):
		// A write failed, or the request's context ended with the body
		// unfinished: the client went away.
		ev.Type, ev.Error = contract.DownloadFailed, contract.Errorf(contract.CodeClientGone, "the client closed the connection after %d bytes", cw.n)
	case failure != nil:
		// The cause is in the stager's log; paths stay out of the event.
		detail := "the source could not be read to the end after %d bytes"
		if c := contract.CodeOf(failure); c == contract.CodeSizeMismatch || c == contract.CodeChecksumMismatch {
			detail = "a file differs from the catalogue: the archive was cut short after %d bytes"
		}
		ev.Type, ev.Error = contract.DownloadFailed, contract.Errorf(contract.CodeIOError, detail, cw.n)
	case short:
		ev.Type, ev.Error = contract.DownloadFailed, contract.Errorf(contract.CodeIOError, "sent %d of %d bytes: the source could not be read to the end", cw.n, d.size)
	}
	if ev.Type == contract.DownloadFailed {
		trace.SpanFromContext(ctx).SetStatus(codes.Error, string(ev.Error.Code))
	}
	d.report(ctx, ev)
}

func (d *download) report(ctx context.Context, ev contract.DownloadEvent) {
	if d.h.events != nil {
		d.h.events.Report(ctx, d.link, ev)
	}
}

// writeTar streams the tree at dir as a tar archive whose entries start
// with top, and returns how many files it sent whole. A symbolic link is
// followed when it stays on the storage and names a file; any other link
// is left out.
func (h *Handler) writeTar(w io.Writer, dir, top string) (files int, err error) {
	tw := tar.NewWriter(w)
	root := h.source.OS()
	err = fs.WalkDir(root.FS(), dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entry := top
		if name != dir {
			entry = top + "/" + strings.TrimPrefix(name, dir+"/")
		}
		fi, err := root.Stat(name)
		if err != nil {
			if d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			return err
		}
		if fi.IsDir() && d.Type()&fs.ModeSymlink != 0 || !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = entry
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := root.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
			return err
		}
		files++
		return nil
	})
	if err != nil {
		return files, err
	}
	return files, tw.Close()
}

// countingWriter counts what is sent. With sendfile, ReadFrom hands files
// to the connection's own ReadFrom (sendfile); without, it copies them
// through a large pooled buffer, each write going straight to the socket.
type countingWriter struct {
	http.ResponseWriter
	n        int64
	sendfile bool
	// err is the first error writing to the client.
	err error
	// onHeader, when set, learns the status before it is sent.
	onHeader    func(status int)
	wroteHeader bool
}

func (c *countingWriter) WriteHeader(status int) {
	if !c.wroteHeader && status >= 200 {
		c.wroteHeader = true
		if c.onHeader != nil {
			c.onHeader(status)
		}
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if !c.sendfile {
		buf := buffers.Get().(*[]byte)
		defer buffers.Put(buf)
		// The wrappers hide ReadFrom and WriteTo, so CopyBuffer uses buf.
		return io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{r}, *buf)
	}
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		if !c.wroteHeader {
			c.WriteHeader(http.StatusOK)
		}
		n, err := rf.ReadFrom(r)
		c.n += n
		if err != nil && c.err == nil {
			// sendfile does not say which side failed; the client's is
			// by far the likelier.
			c.err = err
		}
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c}, r)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func writeError(w http.ResponseWriter, status int, e *contract.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A client gone away is not worth reporting.
	_ = json.NewEncoder(w).Encode(e)
}
