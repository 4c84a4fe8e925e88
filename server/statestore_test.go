package server_test

import (
	"path/filepath"
	"testing"

	"github.com/keyloop/keyloop/server"
	"github.com/keyloop/keyloop/server/statetest"
)

func TestMemoryStateStoreConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) server.StateStore { return server.NewMemoryStateStore() })
}

func TestFileStateStoreConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) server.StateStore {
		s, err := server.NewFileStateStore(server.FileStateConfig{Path: filepath.Join(t.TempDir(), "state.json")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
