package callmodel

import "sync/atomic"

// Var is one name/value pair (a channel variable or a SIP header).
type Var struct {
	Name  string
	Value string
}

// varEntry is one write to a channel's variable log. The log is append-only
// so that a snapshot is just a prefix of it: taking one costs nothing, which
// matters because every event carries one.
type varEntry struct {
	name    string
	value   string
	deleted bool
	// overriddenAt is the log index of the later write that replaced this
	// entry (0 while it is current). It is written once, atomically, and a
	// snapshot of length n treats the entry as live when it is 0 or >= n.
	overriddenAt atomic.Int32
}

// varLog is the mutable side, owned by a channel under its server's lock.
type varLog struct {
	entries []*varEntry
	index   map[string]int
	live    int
}

func (l *varLog) get(name string) (string, bool) {
	i, ok := l.index[name]
	if !ok {
		return "", false
	}
	return l.entries[i].value, true
}

func (l *varLog) set(name, value string) {
	l.write(name, value, false)
}

func (l *varLog) unset(name string) {
	if _, ok := l.index[name]; !ok {
		return
	}
	l.write(name, "", true)
}

func (l *varLog) write(name, value string, deleted bool) {
	if l.index == nil {
		l.index = make(map[string]int, 16)
	}
	pos := len(l.entries)
	if old, ok := l.index[name]; ok {
		l.entries[old].overriddenAt.Store(int32(pos))
		l.live--
	}
	e := &varEntry{name: name, value: value, deleted: deleted}
	l.entries = append(l.entries, e)
	if deleted {
		delete(l.index, name)
		// the tombstone must hide the old value in later snapshots but is
		// itself never live
		e.overriddenAt.Store(int32(pos))
	} else {
		l.index[name] = pos
		l.live++
	}
	if len(l.entries) > 64 && len(l.entries) > 3*l.live {
		l.compact()
	}
}

// compact rewrites the log into a fresh array. Older snapshots keep the old
// array, so they stay valid.
func (l *varLog) compact() {
	fresh := make([]*varEntry, 0, l.live+8)
	idx := make(map[string]int, l.live+8)
	n := int32(len(l.entries))
	for _, e := range l.entries {
		if e.deleted {
			continue
		}
		if o := e.overriddenAt.Load(); o != 0 && o < n {
			continue
		}
		ne := &varEntry{name: e.name, value: e.value}
		idx[e.name] = len(fresh)
		fresh = append(fresh, ne)
	}
	l.entries = fresh
	l.index = idx
	l.live = len(fresh)
}

func (l *varLog) snapshot() Vars {
	return Vars{entries: l.entries[:len(l.entries):len(l.entries)]}
}

// Vars is an immutable, ordered view of a channel's variables at one moment.
// Iteration yields them in the order they were (last) set, which is the
// order FreeSWITCH prints variable_* headers in.
type Vars struct {
	entries []*varEntry
}

func (v Vars) live(i int) bool {
	e := v.entries[i]
	if e.deleted {
		return false
	}
	o := e.overriddenAt.Load()
	return o == 0 || int(o) >= len(v.entries)
}

// Get returns the value of name.
func (v Vars) Get(name string) (string, bool) {
	for i := len(v.entries) - 1; i >= 0; i-- {
		e := v.entries[i]
		if e.name != name {
			continue
		}
		if e.deleted {
			return "", false
		}
		return e.value, true
	}
	return "", false
}

// Value returns the value of name, or "" when it is not set.
func (v Vars) Value(name string) string {
	s, _ := v.Get(name)
	return s
}

// Each calls f for every variable in order.
func (v Vars) Each(f func(name, value string)) {
	for i := range v.entries {
		if v.live(i) {
			f(v.entries[i].name, v.entries[i].value)
		}
	}
}

// Len counts the variables.
func (v Vars) Len() int {
	n := 0
	for i := range v.entries {
		if v.live(i) {
			n++
		}
	}
	return n
}

// List returns the variables in order.
func (v Vars) List() []Var {
	out := make([]Var, 0, len(v.entries))
	v.Each(func(n, val string) { out = append(out, Var{n, val}) })
	return out
}

// Map returns the variables as a map.
func (v Vars) Map() map[string]string {
	out := make(map[string]string, len(v.entries))
	v.Each(func(n, val string) { out[n] = val })
	return out
}
