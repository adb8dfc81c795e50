package redis

import (
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/memory/clustertest"
	"github.com/callctl/callctl/adapters/redis/redistest"
)

func backend(addrs []string, cluster bool) clustertest.Backend {
	return clustertest.Backend{
		New: func(t *testing.T) clustertest.Node {
			cfg := fastConfig(addrs, cluster, randPrefix())
			cfg.RecordCap = 20
			return open(t, cfg, "n1")
		},
		MinAge:    300 * time.Millisecond,
		RecordCap: 20,
	}
}

func TestContractStandalone(t *testing.T) {
	srv := standalone(t)
	clustertest.Run(t, backend([]string{srv.Addr}, false))
}

func TestContractCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	clustertest.Run(t, backend(c.Addrs(), true))
}
