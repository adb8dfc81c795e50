package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
)

// syncWriter serialises writes: callctl's log lines and the demo's own lines
// go to one stream from many goroutines, and must not interleave.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// newLogger is callctl's logger for the demo: INFO and up, text (times
// shortened to the clock, which is what one watches live) or JSON; the
// simulator's own lines are dropped.
func newLogger(w io.Writer, json bool) *slog.Logger {
	if json {
		return slog.New(quietSim{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})})
	}
	return slog.New(quietSim{Handler: slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05.000"))
			}
			return a
		},
	})})
}

// quietSim drops the log lines of the simulated media servers, which log
// through the same logger as the node (integration.Start shares one) with
// the attribute sim=...: the demo shows callctl, not its test bench.
type quietSim struct {
	slog.Handler
	drop bool
}

func (h quietSim) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.drop && h.Handler.Enabled(ctx, l)
}

func (h quietSim) Handle(ctx context.Context, r slog.Record) error {
	if h.drop {
		return nil
	}
	sim := false
	r.Attrs(func(a slog.Attr) bool {
		sim = a.Key == "sim"
		return !sim
	})
	if sim {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietSim) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		if a.Key == "sim" {
			return quietSim{Handler: h.Handler, drop: true}
		}
	}
	return quietSim{Handler: h.Handler.WithAttrs(as), drop: h.drop}
}

func (h quietSim) WithGroup(name string) slog.Handler {
	return quietSim{Handler: h.Handler.WithGroup(name), drop: h.drop}
}
