// Package labtest is what the tests share about the lab beside the
// repository: where the transcripts recorded from real FreeSWITCH and
// Asterisk servers are (../shared/traces), and what a test does when
// something of the lab is missing. In a clone elsewhere it skips, saying
// why; in CI (CI=true) a missing piece is a failure, never a silent skip.
package labtest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// CI reports whether the tests run in CI (the environment variable CI is
// true, as CI systems and .ci/run set it).
func CI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Missing skips t because something of the lab is not there, or fails it
// in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true and the lab is incomplete: "+format, args...)
	}
	t.Skipf(format, args...)
}

// TracesDir is ../shared/traces beside the repository (the module's root),
// or CALLCTL_TRACES when set.
func TracesDir() string {
	if d := os.Getenv("CALLCTL_TRACES"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared", "traces")
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "traces")
		}
		if filepath.Dir(d) == d {
			return filepath.Join("..", "shared", "traces")
		}
	}
}

// Traces returns the path of a recorded transcript (parts below
// ../shared/traces); when it is not there, the test is Missing.
func Traces(t testing.TB, parts ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{TracesDir()}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		Missing(t, "recorded transcripts not available (%s): %v", p, err)
	}
	return p
}
