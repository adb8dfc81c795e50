// Package aside runs a piece of work on a goroutine of its own while the
// caller waits for it.
//
// A goroutine's stack grows with the deepest work done on it and, at a
// garbage collection, shrinks by half only while what it holds plus 800
// bytes is under a quarter of its size: a goroutine that did deep work
// (routing, REST requests, logging) keeps at least 4 KiB for as long as it
// lives. A goroutine that waits through a whole call keeps its first 2 KiB
// only if that work ran aside.
package aside

// Do runs f on a goroutine of its own and returns once f has. A panic in f
// is raised again in the caller.
func Do(f func()) {
	var p any
	panicked := true
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if panicked {
				p = recover()
			}
		}()
		f()
		panicked = false
	}()
	<-done
	if panicked {
		panic(p)
	}
}
