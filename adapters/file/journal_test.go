package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/controller"
)

// The journal keeps the newest records within its bound, reads them back
// (a torn line skipped), and a follower sees new ones across a rotation.
func TestJournalBoundedQueryFollow(t *testing.T) {
	dir := t.TempDir()
	j, err := file.OpenJournal(dir, 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var followed []string
	done := make(chan error, 1)
	go func() {
		done <- file.FollowJournal(ctx, dir, false, 5*time.Millisecond, func(r controller.Record) error {
			mu.Lock()
			followed = append(followed, r.CallID)
			mu.Unlock()
			return nil
		})
	}()
	time.Sleep(20 * time.Millisecond) // the follower starts at the end
	for i := 0; i < 100; i++ {
		if err := j.Write(ctx, &controller.Record{CallID: fmt.Sprint("c", i), Org: "acme", Start: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	var size int64
	for _, n := range []string{"records.jsonl", "records.1.jsonl"} {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	if size > 8<<10 {
		t.Fatalf("journal holds %d bytes, bound 8 KiB", size)
	}
	// A crash mid-write leaves a torn line: skipped.
	f, _ := os.OpenFile(filepath.Join(dir, "records.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"call_id":"torn`)
	f.Close()
	recs, err := file.QueryJournal(dir, func(r *controller.Record) bool { return true }, 5)
	if err != nil || len(recs) != 5 || recs[0].CallID != "c99" || recs[4].CallID != "c95" {
		t.Fatalf("newest 5: %v %v", ids(recs), err)
	}
	all, _ := file.QueryJournal(dir, func(r *controller.Record) bool { return true }, 0)
	if len(all) < 15 || all[len(all)-1].CallID == "c0" {
		t.Fatalf("kept %d records, oldest %s: want the newest kept, the oldest dropped", len(all), all[len(all)-1].CallID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(followed)
		last := ""
		if n > 0 {
			last = followed[n-1]
		}
		mu.Unlock()
		if n == 100 && last == "c99" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower saw %d records, last %s", n, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func ids(rs []controller.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.CallID)
	}
	return out
}
