// Package auth is who may use the control plane: API tokens, each scoped to
// one org or to the cluster. A token is shown once when it is created and
// stored only as a hash of its secret (SHA-256: the secret is 256 random
// bits, so a slow hash adds nothing); it is checked in constant time and
// can be revoked.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Token is a stored API token: never its secret, only the secret's hash.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Org is the org the token acts for; empty for a cluster token.
	Org     string     `json:"org,omitempty"`
	Hash    string     `json:"hash"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Cluster says the token is a cluster admin's.
func (t *Token) Cluster() bool { return t.Org == "" }

// Scope names what the token may act on.
func (t *Token) Scope() string {
	if t.Cluster() {
		return "cluster"
	}
	return "org " + t.Org
}

// Store keeps tokens (a local file for one node, Redis for a cluster).
type Store interface {
	Put(ctx context.Context, t Token) error
	// Get returns the token id, or ErrUnknown.
	Get(ctx context.Context, id string) (Token, error)
	List(ctx context.Context) ([]Token, error)
}

// ErrUnknown is returned for a token that does not exist.
var ErrUnknown = errors.New("unknown token")

// ErrInvalid is returned by Verify for anything that is not a valid token:
// malformed, unknown, wrong secret, revoked. The caller answers 401 and says
// no more.
var ErrInvalid = errors.New("invalid token")

const prefix = "callctl_"

var (
	reID   = regexp.MustCompile(`^[0-9a-f]{16}$`)
	reName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.@-]{0,63}$`)
)

// Create makes a token for org ("" = cluster) and stores it; the returned
// string is the only copy of the secret.
func Create(ctx context.Context, s Store, name, org string, now time.Time) (Token, string, error) {
	if !reName.MatchString(name) {
		return Token{}, "", fmt.Errorf("token name %q: 1-64 letters, digits, space . _ @ -", name)
	}
	var idb [8]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Token{}, "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return Token{}, "", err
	}
	t := Token{ID: hex.EncodeToString(idb[:]), Name: name, Org: org, Created: now.UTC()}
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	t.Hash = hash(sec)
	if err := s.Put(ctx, t); err != nil {
		return Token{}, "", fmt.Errorf("store token: %w", err)
	}
	return t, prefix + t.ID + "_" + sec, nil
}

// Import stores a token made elsewhere (a deployment's secret store, a
// lab's .env file) so that it works as if Create had made it: only its hash
// is kept. Importing the same token again changes nothing; a different
// token with the same id is refused, as is anything Create could not have
// made.
func Import(ctx context.Context, s Store, name, org, presented string, now time.Time) (Token, error) {
	if !reName.MatchString(name) {
		return Token{}, fmt.Errorf("token name %q: 1-64 letters, digits, space . _ @ -", name)
	}
	id, secret, ok := Parse(presented)
	if !ok {
		return Token{}, fmt.Errorf("not a callctl token: want %s<16 hex digits>_<43 characters of base64url>", prefix)
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return Token{}, fmt.Errorf("token %s: its secret is not base64url: %w", id, err)
	}
	t := Token{ID: id, Name: name, Org: org, Hash: hash(secret), Created: now.UTC()}
	old, err := s.Get(ctx, id)
	switch {
	case err == nil:
		if subtle.ConstantTimeCompare([]byte(old.Hash), []byte(t.Hash)) != 1 || old.Org != org {
			return Token{}, fmt.Errorf("token %s exists with another secret or scope", id)
		}
		if old.Revoked != nil {
			return Token{}, fmt.Errorf("token %s was revoked", id)
		}
		return old, nil
	case !errors.Is(err, ErrUnknown):
		return Token{}, fmt.Errorf("import token %s: %w", id, err)
	}
	if err := s.Put(ctx, t); err != nil {
		return Token{}, fmt.Errorf("store token: %w", err)
	}
	return t, nil
}

func hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Parse splits a presented token into its id and secret.
func Parse(s string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(s, prefix)
	if !found {
		return "", "", false
	}
	id, secret, found = strings.Cut(rest, "_")
	if !found || !reID.MatchString(id) || len(secret) != 43 {
		return "", "", false
	}
	return id, secret, true
}

// ID returns the id part of a presented token ("" if it has none), for
// logs: never log a token, log its id.
func ID(s string) string {
	id, _, _ := Parse(s)
	return id
}

// Verify checks a presented token: the token when it is known, its secret
// matches and it is not revoked; else ErrInvalid (or the store's error
// when it cannot be asked).
func Verify(ctx context.Context, s Store, presented string) (Token, error) {
	id, secret, ok := Parse(presented)
	if !ok {
		return Token{}, ErrInvalid
	}
	t, err := s.Get(ctx, id)
	if errors.Is(err, ErrUnknown) {
		return Token{}, ErrInvalid
	}
	if err != nil {
		return Token{}, fmt.Errorf("verify token %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash(secret))) != 1 || t.Revoked != nil {
		return Token{}, ErrInvalid
	}
	return t, nil
}

// Revoke ends token id (it stays listed, marked revoked).
func Revoke(ctx context.Context, s Store, id string, now time.Time) (Token, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return Token{}, err
	}
	if t.Revoked == nil {
		at := now.UTC()
		t.Revoked = &at
		if err := s.Put(ctx, t); err != nil {
			return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
		}
	}
	return t, nil
}
