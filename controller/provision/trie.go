package provision

// cidTrie maps destination prefixes ("+44", "+4930") to the caller-ID number
// of the first rule, in the operator's order, whose prefix matches. Walking it
// costs the length of the destination, not the number of rules.
type cidTrie struct {
	nodes   []cidNode
	numbers []string // by rule position
}

type cidNode struct {
	next [11]int32 // 0-9 and '+'; 0 = none (node 0 is the root, never a child)
	// rule is the position of the first rule ending here, -1 if none.
	rule int32
}

func (t *cidTrie) add(prefix string, rule int32) {
	if len(t.nodes) == 0 {
		t.nodes = append(t.nodes, cidNode{rule: -1})
	}
	n := int32(0)
	for i := 0; i < len(prefix); i++ {
		c := slot(prefix[i])
		if c < 0 {
			return
		}
		nx := t.nodes[n].next[c]
		if nx == 0 {
			t.nodes = append(t.nodes, cidNode{rule: -1})
			nx = int32(len(t.nodes) - 1)
			t.nodes[n].next[c] = nx
		}
		n = nx
	}
	if t.nodes[n].rule < 0 || rule < t.nodes[n].rule {
		t.nodes[n].rule = rule
	}
}

// first returns the lowest rule position matching s, or -1.
func (t *cidTrie) first(s string) int32 {
	best := int32(-1)
	if len(t.nodes) == 0 {
		return best
	}
	n := int32(0)
	for i := 0; i < len(s); i++ {
		c := slot(s[i])
		if c < 0 {
			break
		}
		n = t.nodes[n].next[c]
		if n == 0 {
			break
		}
		if r := t.nodes[n].rule; r >= 0 && (best < 0 || r < best) {
			best = r
		}
	}
	return best
}

func slot(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c == '+':
		return 10
	}
	return -1
}

// match returns the number of the first rule matching s, or "".
func (t *cidTrie) match(s string) string {
	i := t.first(s)
	if i < 0 {
		return ""
	}
	return t.numbers[i]
}
