package fsm

import (
	"fmt"
	"sync"
	"testing"
)

// A clone's changes never show in the tree it was cloned from, even while
// readers walk the original concurrently (run with -race).
func TestSecretTreeCloneIsolation(t *testing.T) {
	base := newSecretTree()
	for i := range 2000 {
		base.insert(&Secret{Path: fmt.Sprintf("/a/%05d", i), UID: "v0"})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := 0
				base.Ascend("/a/", func(s *Secret) bool {
					if s.UID != "v0" {
						t.Errorf("reader saw a clone's change at %s", s.Path)
					}
					n++
					return true
				})
				if n != 2000 || base.Len() != 2000 {
					t.Errorf("reader saw %d secrets (Len %d), want 2000", n, base.Len())
				}
				if s, ok := base.Get("/a/00007"); !ok || s.UID != "v0" {
					t.Errorf("Get on the base: %v %v", s, ok)
				}
			}
		}()
	}
	cur := base
	for round := range 50 {
		next := cur.clone()
		for i := round; i < 2000; i += 7 {
			next.insert(&Secret{Path: fmt.Sprintf("/a/%05d", i), UID: fmt.Sprint("v", round+1)})
		}
		next.delete(fmt.Sprintf("/a/%05d", round))
		next.insert(&Secret{Path: fmt.Sprintf("/b/%05d", round), UID: "new"})
		if cur != base {
			// The previous clone, now "published", is unchanged too.
			if _, ok := cur.Get(fmt.Sprintf("/b/%05d", round)); ok {
				t.Fatalf("round %d: the published clone changed", round)
			}
		}
		cur = next
	}
	close(stop)
	wg.Wait()
	if cur.Len() != 2000 { // 50 deleted, 50 added
		t.Fatalf("final clone holds %d secrets", cur.Len())
	}
	var prev string
	cur.Ascend("", func(s *Secret) bool {
		if s.Path <= prev {
			t.Fatalf("out of order: %s after %s", s.Path, prev)
		}
		prev = s.Path
		return true
	})
}
