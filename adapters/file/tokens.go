package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/callctl/callctl/auth"
)

// Tokens keeps a single node's API tokens (their hashes) in dir/tokens.json.
// The node reads it on each request, so a token created or revoked with
// `callctl token` counts at once.
type Tokens struct {
	dir  string
	path string
}

var _ auth.Store = (*Tokens)(nil)

// NewTokens opens the tokens file in dir (created when the first token is).
func NewTokens(dir string) (*Tokens, error) {
	if err := Dir(dir); err != nil {
		return nil, err
	}
	return &Tokens{dir: dir, path: filepath.Join(dir, "tokens.json")}, nil
}

func (s *Tokens) read() (map[string]auth.Token, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]auth.Token{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	m := map[string]auth.Token{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("tokens file %s does not decode: %w", s.path, err)
	}
	return m, nil
}

// Put stores t, replacing the token with its id.
func (s *Tokens) Put(ctx context.Context, t auth.Token) error {
	unlock, err := lock(ctx, s.dir)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.read()
	if err != nil {
		return err
	}
	m[t.ID] = t
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteAtomic(s.path, b, 0o600)
}

// Get returns token id or auth.ErrUnknown.
func (s *Tokens) Get(ctx context.Context, id string) (auth.Token, error) {
	m, err := s.read()
	if err != nil {
		return auth.Token{}, err
	}
	t, ok := m[id]
	if !ok {
		return auth.Token{}, auth.ErrUnknown
	}
	return t, nil
}

// List returns every token, oldest first.
func (s *Tokens) List(ctx context.Context) ([]auth.Token, error) {
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	out := make([]auth.Token, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}
