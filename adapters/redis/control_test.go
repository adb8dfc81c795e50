package redis

import (
	"testing"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/control/controltest"
)

func controlBackend(addrs []string, cluster bool) func(t *testing.T) (control.Store, control.Store) {
	return func(t *testing.T) (control.Store, control.Store) {
		cfg := fastConfig(addrs, cluster, randPrefix())
		return open(t, cfg, "a").Control(), open(t, cfg, "b").Control()
	}
}

func TestControlContractStandalone(t *testing.T) {
	controltest.Run(t, controlBackend([]string{standalone(t).Addr}, false))
}

func TestControlContractCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	controltest.Run(t, controlBackend(c.Addrs(), true))
}
