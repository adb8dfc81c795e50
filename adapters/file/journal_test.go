package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	// The follower starts at the end of the journal: write markers until it
	// has seen one, so that it is surely reading before the records count.
	seen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(followed)
	}
	for i := 0; seen() == 0; i++ {
		if i == 1000 {
			t.Fatal("the follower saw no record in 5 s")
		}
		if err := j.Write(ctx, &controller.Record{CallID: fmt.Sprint("marker", i), Org: "acme", Start: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	followed = nil
	mu.Unlock()
	for i := 0; i < 100; i++ {
		if err := j.Write(ctx, &controller.Record{CallID: fmt.Sprint("c", i), Org: "acme", Start: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// A follower that lags more than the journal's bound loses what was
		// rotated away (it is bounded on purpose): on a loaded machine let it
		// catch up every few records, well within one rotation, so the test
		// is about following across rotations, not about the scheduler.
		if i%10 == 9 {
			for deadline := time.Now().Add(10 * time.Second); seen() < i+1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the follower saw %d of the first %d records", seen(), i+1)
				}
			}
		}
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
		var calls []string
		for _, id := range followed {
			if !strings.HasPrefix(id, "marker") { // markers written just before the reset
				calls = append(calls, id)
			}
		}
		mu.Unlock()
		n, last := len(calls), ""
		if n > 0 {
			last = calls[n-1]
		}
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
