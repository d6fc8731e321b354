package node

import "testing"

func TestSnapshotCommandLimit(t *testing.T) {
	for _, c := range []struct {
		min      uint64
		versions int
		want     uint64
	}{
		{65536, 0, 65536}, {65536, 100000, 65536}, {65536, 1000000, 125000}, {150, 10, 150}, {150, -1, 150},
	} {
		if got := snapshotCommandLimit(c.min, c.versions); got != c.want {
			t.Errorf("snapshotCommandLimit(%d, %d) = %d, want %d", c.min, c.versions, got, c.want)
		}
	}
}
