package memory_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/adapters/memory/clustertest"
)

func TestContract(t *testing.T) {
	clustertest.Run(t, clustertest.Backend{
		New: func(t *testing.T) clustertest.Node {
			return memory.New(memory.Options{Node: "n1", RecordCap: 20, ReconcileMinAge: 200 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		},
		MinAge:    200 * time.Millisecond,
		RecordCap: 20,
	})
}
