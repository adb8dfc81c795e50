package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/auth"
)

// Tokens keeps the cluster's API tokens (their hashes) in one Redis hash,
// <prefix>:tokens, id -> JSON.
type Tokens struct {
	rdb goredis.UniversalClient
	key string
}

var _ auth.Store = (*Tokens)(nil)

// NewTokens keeps tokens through rdb under prefix (defaults applied by the
// caller's Config).
func NewTokens(rdb goredis.UniversalClient, prefix string) *Tokens {
	return &Tokens{rdb: rdb, key: prefix + ":tokens"}
}

// Tokens returns the token store over this node's connection.
func (s *Store) Tokens() *Tokens { return NewTokens(s.rdb, s.cfg.Prefix) }

// Put stores t.
func (t *Tokens) Put(ctx context.Context, tok auth.Token) error {
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	if err := t.rdb.HSet(ctx, t.key, tok.ID, b).Err(); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// Get returns token id or auth.ErrUnknown.
func (t *Tokens) Get(ctx context.Context, id string) (auth.Token, error) {
	b, err := t.rdb.HGet(ctx, t.key, id).Bytes()
	if isNil(err) {
		return auth.Token{}, auth.ErrUnknown
	}
	if err != nil {
		return auth.Token{}, fmt.Errorf("read token: %w", err)
	}
	var tok auth.Token
	if err := json.Unmarshal(b, &tok); err != nil {
		return auth.Token{}, fmt.Errorf("token %s in Redis does not decode: %w", id, err)
	}
	return tok, nil
}

// List returns every token, oldest first.
func (t *Tokens) List(ctx context.Context) ([]auth.Token, error) {
	m, err := t.rdb.HGetAll(ctx, t.key).Result()
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]auth.Token, 0, len(m))
	for id, b := range m {
		var tok auth.Token
		if err := json.Unmarshal([]byte(b), &tok); err != nil {
			return nil, fmt.Errorf("token %s in Redis does not decode: %w", id, err)
		}
		out = append(out, tok)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}
