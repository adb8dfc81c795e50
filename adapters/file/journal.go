package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/callctl/callctl/controller"
)

// Journal keeps a single node's call records as JSON lines in
// dir/records.jsonl, bounded: when the file passes half the bound it becomes
// records.1.jsonl (replacing the one before) and a new file starts, so at
// most the bound is kept, the newest records always.
type Journal struct {
	dir, path, old string
	max            int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// DefaultJournalBytes bounds a journal unless told otherwise.
const DefaultJournalBytes = 256 << 20

// OpenJournal opens (creating) the journal in dir, keeping at most max
// bytes (0: DefaultJournalBytes).
func OpenJournal(dir string, max int64) (*Journal, error) {
	if err := Dir(dir); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultJournalBytes
	}
	j := &Journal{dir: dir, path: filepath.Join(dir, "records.jsonl"), old: filepath.Join(dir, "records.1.jsonl"), max: max}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Journal) open() error {
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("records journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("records journal: %w", err)
	}
	j.f, j.size = f, st.Size()
	return nil
}

// Write appends a finished call's record.
func (j *Journal) Write(ctx context.Context, r *controller.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record %s: %w", r.CallID, err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("record %s: journal closed", r.CallID)
	}
	if j.size+int64(len(b)) > j.max/2 && j.size > 0 {
		if err := j.rotate(); err != nil {
			return fmt.Errorf("record %s: %w", r.CallID, err)
		}
	}
	n, err := j.f.Write(b)
	j.size += int64(n)
	if err != nil {
		return fmt.Errorf("record %s: %w", r.CallID, err)
	}
	return nil
}

func (j *Journal) rotate() error {
	if err := j.f.Sync(); err != nil {
		return err
	}
	j.f.Close()
	j.f = nil
	if err := os.Rename(j.path, j.old); err != nil {
		return fmt.Errorf("rotate records journal: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	return j.open()
}

// Close syncs and closes the journal.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}

// readJournal calls fn with each record of dir's journal, oldest first. A
// line that does not decode (a torn last line after a crash) is skipped.
func readJournal(dir string, fn func(controller.Record) error) error {
	for _, name := range []string{"records.1.jsonl", "records.jsonl"} {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("records journal: %w", err)
		}
		err = scan(f, fn)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func scan(r io.Reader, fn func(controller.Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec controller.Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return sc.Err()
}

// QueryJournal returns the records of dir's journal that match, newest
// first, at most limit (0: all).
func QueryJournal(dir string, match func(*controller.Record) bool, limit int) ([]controller.Record, error) {
	var all []controller.Record
	err := readJournal(dir, func(r controller.Record) error {
		if match(&r) {
			all = append(all, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]controller.Record, 0, len(all))
	for i := len(all) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		out = append(out, all[i])
	}
	return out, nil
}

// QueryJournalInOrder calls fn with every record of dir's journal, oldest
// first.
func QueryJournalInOrder(dir string, fn func(controller.Record) error) error {
	return readJournal(dir, fn)
}

// Query is QueryJournal over this journal (since and until are left to
// match).
func (j *Journal) Query(ctx context.Context, since, until time.Time, match func(*controller.Record) bool, limit int) ([]controller.Record, error) {
	return QueryJournal(j.dir, match, limit)
}

// FollowJournal calls fn with each record written to dir's journal after
// now (all kept ones first when all is set), polling every interval, until
// ctx ends (nil) or fn fails (its error). It follows the journal across a
// rotation.
func FollowJournal(ctx context.Context, dir string, all bool, interval time.Duration, fn func(controller.Record) error) error {
	if all {
		if err := readJournal(dir, fn); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, "records.jsonl")
	var off int64
	var ino uint64
	if st, err := os.Stat(path); err == nil {
		off, ino = st.Size(), inode(st)
	}
	var partial []byte
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		if inode(st) != ino {
			// Rotated: finish the old file, then start the new one.
			if _, err := readFrom(filepath.Join(dir, "records.1.jsonl"), off, &partial, fn); err != nil {
				return err
			}
			off, ino, partial = 0, inode(st), nil
		}
		if st.Size() <= off {
			continue
		}
		if off, err = readFrom(path, off, &partial, fn); err != nil {
			return err
		}
	}
}

// readFrom hands fn the complete lines of path after off and returns where
// it stopped reading; an unfinished last line waits in partial.
func readFrom(path string, off int64, partial *[]byte, fn func(controller.Record) error) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return off, nil
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return off, nil
	}
	off += int64(len(b))
	b = append(*partial, b...)
	last := bytes.LastIndexByte(b, '\n')
	if last < 0 {
		*partial = b
		return off, nil
	}
	*partial = append([]byte(nil), b[last+1:]...)
	return off, scan(bytes.NewReader(b[:last+1]), fn)
}
