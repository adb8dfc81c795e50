package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
)

// A story one node keeps is read by another: by channel, and by the user it
// is connected to. Every key has an expiry, the one of an ended story
// StoryMemory.
func TestStoriesAcrossNodes(t *testing.T) {
	srv := standalone(t)
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	a, b := open(t, cfg, "a"), open(t, cfg, "b")
	ctx := context.Background()
	if err := a.Begin(ctx, "pstn-ch", controller.Story{Server: "srv11", Record: "rec1", Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, "srv11", "pstn-ch", "rec1", "3999", "acme.example", "phone-leg"); err != nil {
		t.Fatal(err)
	}
	want := controller.Story{Server: "srv11", Record: "rec1", Org: "acme", User: "3999", Domain: "acme.example", Leg: "phone-leg"}
	if st, ok, err := b.Of(ctx, "srv11", "pstn-ch"); err != nil || !ok || st != want {
		t.Fatalf("the other node's story of the channel: %+v %v %v, want %+v", st, ok, err, want)
	}
	if st, ok, err := b.ConnectedTo(ctx, "srv11", "acme.example", "3999", "consult-ch"); err != nil || !ok || st != want {
		t.Fatalf("the other node's story connected to 3999: %+v %v %v, want %+v", st, ok, err, want)
	}
	if st, ok, err := b.OfLeg(ctx, "srv11", "phone-leg"); err != nil || !ok || st != want {
		t.Fatalf("the other node's story connected over the phone's leg: %+v %v %v, want %+v", st, ok, err, want)
	}
	keys, err := srv.Client().Keys(ctx, "{"+cfg.Prefix+":story:*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("story keys %v (%v), want the channel's, the user's and the leg's", keys, err)
	}
	for _, k := range keys {
		if ttl := srv.Client().PTTL(ctx, k).Val(); ttl <= controller.StoryMemory || ttl > heldStoryTTL {
			t.Errorf("key %s expires in %s while its call is up, want within %s", k, ttl, heldStoryTTL)
		}
	}
	if err := b.End(ctx, "srv11", "pstn-ch", "rec1"); err != nil {
		t.Fatal(err)
	}
	key := a.storyTag("srv11") + "c:pstn-ch"
	if ttl := srv.Client().PTTL(ctx, key).Val(); ttl <= 0 || ttl > controller.StoryMemory {
		t.Errorf("the ended story expires in %s, want within %s", ttl, controller.StoryMemory)
	}
	if n := srv.Client().Exists(ctx, a.storyTag("srv11")+"l:phone-leg").Val(); n != 0 {
		t.Errorf("the leg of an ended story still names it")
	}
	// Gone (expired, or lost with Redis's data): nothing is found, and the
	// user's list drops it.
	srv.Client().Del(ctx, key)
	if _, ok, err := b.Of(ctx, "srv11", "pstn-ch"); err != nil || ok {
		t.Fatalf("story of a channel whose key is gone: found %v, err %v", ok, err)
	}
	if _, ok, err := b.ConnectedTo(ctx, "srv11", "acme.example", "3999", "consult-ch"); err != nil || ok {
		t.Fatalf("story connected to 3999 after its key is gone: found %v, err %v", ok, err)
	}
	if n := srv.Client().Exists(ctx, a.storyTag("srv11")+"u:acme.example/3999").Val(); n != 0 {
		t.Errorf("the user's list still names a story that is gone")
	}
}

// Redis unreachable: a story operation fails within its context's bound,
// at once once the node knows Redis is down, and never panics.
func TestStoriesRedisDown(t *testing.T) {
	srv := standalone(t)
	s := open(t, fastConfig([]string{srv.Addr}, false, randPrefix()), "a")
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := s.Of(ctx, "srv11", "ch"); err == nil {
		t.Fatal("story read with Redis gone: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("story read with Redis gone took %s, want within its 300ms context", d)
	}
	eventually(t, 10*time.Second, "the node did not notice Redis is down", func() bool { return !s.Up() })
	start = time.Now()
	err := s.Begin(context.Background(), "ch", controller.Story{Server: "srv11", Record: "r"})
	if !errors.Is(err, errStoriesDown) {
		t.Fatalf("story begun with Redis known down: %v, want %v", err, errStoriesDown)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("story begun with Redis known down took %s, want at once", d)
	}
}
