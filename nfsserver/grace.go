package nfsserver

import (
	"bytes"
	"io"
	"slices"
)

// ganesha's own words when its NFSv4 grace period begins and ends (LogEvent of its STATE
// component, logged at the default level NIV_EVENT and above), in ganesha 4.x.
var (
	graceStartMarker = []byte("NFS Server Now IN GRACE")
	graceEndMarker   = []byte("NFS Server Now NOT IN GRACE")
)

// GraceEvent tells whether a line of ganesha's log starts (inGrace true) or ends its grace
// period; ok is false for any other line.
func GraceEvent(line []byte) (inGrace, ok bool) {
	switch {
	case bytes.Contains(line, graceEndMarker):
		return false, true
	case bytes.Contains(line, graceStartMarker):
		return true, true
	}
	return false, false
}

// maxLogLine bounds the partial line a graceWatcher keeps; a longer line is passed on but
// not searched.
const maxLogLine = 64 << 10

// graceWatcher passes ganesha's output through to out unchanged and calls set at each grace
// period start or end it logs. One goroutine writes to it (exec copies each pipe in its own).
type graceWatcher struct {
	out     io.Writer
	set     func(inGrace bool)
	partial []byte
	// skip is true while the rest of an over-long line is dropped.
	skip bool
}

func (w *graceWatcher) Write(p []byte) (int, error) {
	n, err := w.out.Write(p)
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !w.skip {
				w.partial = append(w.partial, rest...)
				if len(w.partial) > maxLogLine {
					w.partial, w.skip = w.partial[:0], true
				}
			}
			break
		}
		if !w.skip {
			line := rest[:i]
			if len(w.partial) > 0 {
				line = append(w.partial, line...)
			}
			if inGrace, ok := GraceEvent(line); ok {
				w.set(inGrace)
			}
		}
		w.partial, w.skip = w.partial[:0], false
		rest = rest[i+1:]
	}
	return n, err
}

// logsGrace tells whether ganesha's grace messages reach the agent: ganesha logs to the
// agent's stdout or stderr at NIV_EVENT or more. Otherwise the agent assumes grace lasts the
// whole configured period (an upper bound: NFSv4.1 clients' RECLAIM_COMPLETE ends it sooner).
func (o Options) logsGrace() bool {
	return (o.GaneshaLog == "STDOUT" || o.GaneshaLog == "STDERR") &&
		slices.Index(ganeshaLogLevels, o.GaneshaLogLevel) >= slices.Index(ganeshaLogLevels, "NIV_EVENT")
}
