package redis

// Up says whether Redis answered the node's last request (for /readyz and
// the metrics).
func (s *Store) Up() bool { return s.up.Load() }
