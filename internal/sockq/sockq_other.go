//go:build !linux

package sockq

import "errors"

func unread(uintptr) (int, error) { return 0, errors.New("sockq: not supported on this system") }
