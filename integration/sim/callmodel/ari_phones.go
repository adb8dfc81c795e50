package callmodel

import "sort"

// PhonesOf lists the extensions of the phones known on server (registered
// or not), sorted. The ARI front lists them as PJSIP endpoints.
func (f *Fleet) PhonesOf(server string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.phones {
		if k.server == server {
			out = append(out, k.ext)
		}
	}
	sort.Strings(out)
	return out
}
