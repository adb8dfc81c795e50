package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/auth"
)

func TestTokensAreStoredAsHashesAndRevoked(t *testing.T) {
	dir := t.TempDir()
	s, err := file.NewTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	tok, secret, err := auth.Create(ctx, s, "acme admin", "acme", now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "callctl_"+tok.ID+"_") || tok.Scope() != "org acme" {
		t.Fatalf("token %q %+v", secret, tok)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "tokens.json"))
	if strings.Contains(string(raw), secret[len("callctl_"+tok.ID+"_"):]) {
		t.Fatal("the secret is stored in clear")
	}
	got, err := auth.Verify(ctx, s, secret)
	if err != nil || got.ID != tok.ID || got.Org != "acme" {
		t.Fatalf("verify: %+v %v", got, err)
	}
	for _, bad := range []string{"", "Bearer x", secret + "x", secret[:len(secret)-1] + "A", "callctl_0000000000000000_" + secret[len(secret)-43:],
		strings.Replace(secret, tok.ID, "zz"+tok.ID[2:], 1), "callctl_" + tok.ID + "_\x00\r\n"} {
		if _, err := auth.Verify(ctx, s, bad); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("verify %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := auth.Revoke(ctx, s, tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Verify(ctx, s, secret); !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("revoked token: %v", err)
	}
	list, _ := s.List(ctx)
	if len(list) != 1 || list[0].Revoked == nil {
		t.Fatalf("list %+v", list)
	}
	if _, _, err := auth.Create(ctx, s, "bad\nname", "", now); err == nil {
		t.Fatal("a name with a newline was accepted")
	}
}
