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
	for _, bad := range []string{"", "Bearer x", secret + "x", secret[:len(secret)-1] + otherLast(secret), "callctl_0000000000000000_" + secret[len(secret)-43:],
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

// A token made elsewhere (a lab's .env) works once imported; importing it
// again is harmless; a clash, a revoked token or garbage is refused.
func TestImportedTokens(t *testing.T) {
	dir := t.TempDir()
	s, err := file.NewTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	const lab = "callctl_00000000000000aa_labLABlabLABlabLABlabLABlabLABlabLABlabLABl"
	tok, err := auth.Import(ctx, s, "lab", "", lab, now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != "00000000000000aa" || !tok.Cluster() {
		t.Fatalf("imported %+v", tok)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "tokens.json"))
	if strings.Contains(string(raw), lab[len("callctl_00000000000000aa_"):]) {
		t.Fatal("the secret is stored in clear")
	}
	if got, err := auth.Verify(ctx, s, lab); err != nil || got.ID != tok.ID {
		t.Fatalf("verify the imported token: %+v %v", got, err)
	}
	if again, err := auth.Import(ctx, s, "lab", "", lab, now.Add(time.Hour)); err != nil || !again.Created.Equal(tok.Created) {
		t.Fatalf("import again: %+v %v", again, err)
	}
	other := lab[:len(lab)-1] + "X"
	if _, err := auth.Import(ctx, s, "lab", "", other, now); err == nil {
		t.Error("a second secret under the same id was accepted")
	}
	if _, err := auth.Verify(ctx, s, other); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("the clashing secret verifies: %v", err)
	}
	if _, err := auth.Import(ctx, s, "lab", "acme", lab, now); err == nil {
		t.Error("the same token for another scope was accepted")
	}
	for _, bad := range []string{"", "secret", "callctl_00000000000000ab_short", "callctl_00000000000000ab_" + strings.Repeat("+", 43),
		"callctl_0000000000000xyz_" + strings.Repeat("a", 43), lab + "\n"} {
		if _, err := auth.Import(ctx, s, "lab", "", bad, now); err == nil {
			t.Errorf("imported %q", bad)
		}
	}
	if _, err := auth.Import(ctx, s, "lab\r\nx", "", "callctl_00000000000000ac_"+strings.Repeat("a", 43), now); err == nil {
		t.Error("a name with a line break was accepted")
	}
	if _, err := auth.Revoke(ctx, s, tok.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Import(ctx, s, "lab", "", lab, now); err == nil {
		t.Error("importing a revoked token brought it back")
	}
}

// otherLast is a last character other than secret's own, so the token it
// makes is surely wrong.
func otherLast(secret string) string {
	if secret[len(secret)-1] == 'A' {
		return "B"
	}
	return "A"
}
