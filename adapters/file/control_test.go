package file_test

import (
	"testing"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/control/controltest"
)

func TestControlContract(t *testing.T) {
	controltest.Run(t, func(t *testing.T) (control.Store, control.Store) {
		c, err := file.NewControl(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return c, c
	})
}
