package monitor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxLogLine is the longest record the CRI log gets; longer lines are
// split into partial (P) records, as the kubelet expects (it uses 16 KiB too).
const DefaultMaxLogLine = 16 * 1024

// Bounds of --max-log-line, as of max_container_log_line_size.
const (
	minMaxLogLine = 1024
	maxMaxLogLine = 1 << 20
)

const (
	streamStdout = "stdout"
	streamStderr = "stderr"
)

// logWriter writes one container's CRI log file. Both streams share it so a
// record is always written whole: lines never interleave mid-line.
type logWriter struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *bufio.Writer
	ts   []byte // scratch for the timestamp, reused under mu
	err  error  // first write error, reported once
}

func openLog(path string) (*logWriter, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &logWriter{path: path, f: f, w: bufio.NewWriterSize(f, 4096), ts: make([]byte, 0, 40)}, nil
}

func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	// The log dir is the kubelet's, but the file name may already exist
	// (a restart, a reopen after rotation), and a symlink planted there
	// would have the monitor, as root, append to any file on the host.
	// O_NOFOLLOW makes that an error (ELOOP) instead. O_NONBLOCK keeps a
	// FIFO planted there from blocking the open; it is then refused as
	// not a regular file, and means nothing for a regular one.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("open container log %s: it is a symbolic link, which is not followed: %w", path, err)
		}
		return nil, fmt.Errorf("open container log: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
		}
		return nil, fmt.Errorf("open container log %s: %w", path, err)
	}
	return f, nil
}

// record appends one record; flush is set by the copier when it has nothing
// more buffered, so the kubelet tailing the file sees a batch as soon as it
// is complete without a write(2) per line under load.
func (l *logWriter) record(stream string, partial bool, text []byte, flush bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return errors.New("log closed")
	}
	l.ts = time.Now().UTC().AppendFormat(l.ts[:0], time.RFC3339Nano)
	l.ts = append(l.ts, ' ')
	l.ts = append(l.ts, stream...)
	if partial {
		l.ts = append(l.ts, " P "...)
	} else {
		l.ts = append(l.ts, " F "...)
	}
	l.w.Write(l.ts)
	l.w.Write(text)
	_, err := l.w.Write(newline)
	if flush && err == nil {
		err = l.w.Flush()
	}
	if err == nil {
		return nil
	}
	// bufio's error is sticky: start over so a later record can succeed
	// (e.g. once space was freed), and report only the first failure.
	l.w.Reset(l.f)
	if l.err != nil {
		return nil
	}
	l.err = err
	return err
}

var newline = []byte{'\n'}

// reopen switches to a fresh file at the same path: the kubelet rotates by
// renaming and then asks for a reopen.
func (l *logWriter) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return errors.New("log closed")
	}
	l.w.Flush()
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f = f
	l.w.Reset(f)
	l.err = nil
	return nil
}

func (l *logWriter) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	ferr := l.w.Flush()
	cerr := l.f.Close()
	l.w = nil
	return errors.Join(ferr, cerr)
}

// copyStream turns a container's output stream into CRI records until EOF or a
// read error (the read deadline set when the container is gone and a stray
// process still holds the pipe). A line longer than maxLine becomes maxLine
// pieces tagged P; so is a last line without a newline, as containerd writes
// it: the kubelet ends an F record with a newline the container never wrote
// (a termination message taken from the log would gain one).
func copyStream(r io.Reader, stream string, lw *logWriter, maxLine int, onErr func(error)) {
	br := bufio.NewReaderSize(r, maxLine)
	reported := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			partial := err != nil
			if err == nil {
				line = line[:len(line)-1]
			}
			if werr := lw.record(stream, partial, line, br.Buffered() == 0); werr != nil && !reported {
				reported = true
				onErr(werr)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
