package testcluster_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// TestClusterConsistencyLeader: a read with consistency "leader" on one
// follower sees a write acknowledged through another follower just before,
// without min_index.
func TestClusterConsistencyLeader(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	a, b := c.Client(f[0]), c.Client(f[1])
	leader := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
	const path = "/consistency/app/counter"
	if _, err := a.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	stale := 0
	defer func() {
		if stale > 0 {
			t.Errorf("%d of 40 leader reads were stale", stale)
		}
	}()
	for i := 1; i <= 40; i++ {
		want := fmt.Sprint(i)
		w, r := a, b
		if i%2 == 0 {
			w, r = b, a
		}
		p, err := w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(want)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: leader})
		if err != nil {
			t.Fatalf("iteration %d: leader read: %v", i, err)
		}
		if string(got.Value) != want || got.Version != p.Version || got.Index < p.Index {
			stale++
			t.Errorf("iteration %d: leader read on the other follower saw %q (v%d, answer index %d) after the write of %q (v%d, index %d) was acknowledged: not linearizable",
				i, got.Value, got.Version, got.Index, want, p.Version, p.Index)
		}
		// A new secret is visible to describe and list too.
		np := fmt.Sprintf("/consistency/app/new%02d", i)
		if _, err := w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: np}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: np, ReadOptions: leader}); err != nil {
			stale++
			t.Errorf("iteration %d: leader describe of a secret just created through the other follower: %v", i, err)
		}
	}
	ls, err := b.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/consistency/app/", PageSize: 1000, ReadOptions: leader})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Secrets) != 41 {
		t.Fatalf("leader list: %d secrets, want 41", len(ls.Secrets))
	}
}

// TestClusterConsistencyLeaderConcurrent: many concurrent leader reads on
// both followers (they share read-index rounds) never miss a write
// acknowledged before the read began. One writer counts up through a
// follower; a read that started after the write of n was acknowledged must
// see n or more.
func TestClusterConsistencyLeaderConcurrent(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	const path = "/consistency/concurrent"
	w := c.Client(f[0])
	if _, err := w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := 0 // the highest value whose write was acknowledged
	done := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopReaders := func() { stopOnce.Do(func() { close(done); wg.Wait() }) }
	defer stopReaders() // also when the writer fails the test
	var reads, bad int
	for r := range 16 {
		cl := c.Client(f[r%2])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				floor := acked
				mu.Unlock()
				got, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}})
				if err != nil {
					t.Errorf("leader read: %v", err)
					return
				}
				var v int
				fmt.Sscan(string(got.Value), &v)
				mu.Lock()
				reads++
				if v < floor {
					bad++
					t.Errorf("a leader read that began after the write of %d was acknowledged saw %d", floor, v)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 1; i <= 60; i++ {
		if _, err := w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		acked = i
		mu.Unlock()
	}
	stopReaders()
	if reads < 60 || bad > 0 {
		t.Fatalf("%d leader reads, %d stale", reads, bad)
	}
}

// TestClusterReadYourWritesMinIndex: a read on a follower with min_index =
// the index of an acknowledged write always sees that write (SPEC §2:
// read-your-writes on followers). Several writers at once, so the followers
// are applying while they are read.
func TestClusterReadYourWritesMinIndex(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	l, f := c.Leader(), c.Followers()
	const workers, iters = 4, 25
	var wg sync.WaitGroup
	errc := make(chan error, workers*iters*2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			writer := c.Client([]int{l, f[0]}[w%2])
			readers := []*client.Client{c.Client(f[0]), c.Client(f[1])}
			for i := 0; i < iters; i++ {
				p, v := fmt.Sprintf("/ryw/w%d/s%02d", w, i), fmt.Sprintf("w%d-i%d", w, i)
				cr, err := writer.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: p, Value: []byte(v)})
				if err != nil {
					errc <- err
					return
				}
				for _, r := range readers {
					got, err := r.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: p, ReadOptions: apitypes.ReadOptions{MinIndex: cr.Index}})
					switch {
					case err != nil:
						errc <- fmt.Errorf("%s: read of %s with min_index %d (its create's index): %v", r.Addr(), p, cr.Index, err)
					case string(got.Value) != v:
						errc <- fmt.Errorf("%s: read of %s with min_index %d: %q", r.Addr(), p, cr.Index, got.Value)
					case got.Index < cr.Index:
						errc <- fmt.Errorf("%s: read with min_index %d answered index %d", r.Addr(), cr.Index, got.Index)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	n := 0
	for err := range errc {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d min_index reads did not see the write they waited for", n, workers*iters*2)
	}
}

// tcListPages lists prefix page by page and returns the pages.
func tcListPages(t *testing.T, cl *client.Client, prefix string, recursive bool, minIndex uint64) []apitypes.ListSecretsResponse {
	t.Helper()
	ctx := tcCtx(t, 30*time.Second)
	var pages []apitypes.ListSecretsResponse
	tok := ""
	for {
		r, err := cl.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: prefix, Recursive: recursive, PageSize: 2, PageToken: tok, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
		if err != nil {
			t.Fatalf("%s: list %s (recursive %v, page %d): %v", cl.Addr(), prefix, recursive, len(pages), err)
		}
		if n := len(r.Secrets) + len(r.Folders); n > 2 {
			t.Fatalf("%s: list %s page %d has %d items, page_size is 2", cl.Addr(), prefix, len(pages), n)
		}
		pages = append(pages, *r)
		if r.NextPageToken == "" {
			return pages
		}
		if len(pages) > 20 {
			t.Fatalf("%s: list %s does not end", cl.Addr(), prefix)
		}
		tok = r.NextPageToken
	}
}

// tcPageView is the comparable part of a list page.
type tcPageView struct {
	Secrets []string
	UIDs    []string
	Folders []string
	Next    string
}

func tcView(pages []apitypes.ListSecretsResponse) []tcPageView {
	var out []tcPageView
	for _, p := range pages {
		v := tcPageView{Folders: append([]string{}, p.Folders...), Next: p.NextPageToken}
		for _, s := range p.Secrets {
			v.Secrets = append(v.Secrets, s.Path)
			v.UIDs = append(v.UIDs, s.UID)
		}
		out = append(out, v)
	}
	return out
}

// TestClusterListSecretsAcrossNodes: folders and pagination, recursive and
// not, with identical answers from every node.
func TestClusterListSecretsAcrossNodes(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	// 7 secrets in nested folders, including a secret named like a folder
	// and names that sort next to the folder's "/".
	paths := []string{
		"/app/prod/api/db",
		"/app/a",
		"/app/prod",
		"/app/prod-x",
		"/app/dev/z",
		"/app/prod/db/pass",
		"/other/q",
	}
	for i, p := range paths {
		if _, err := c.Client([]int{f[0], f[1], c.Leader()}[i%3]).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	min := tcLeaderIndex(c)
	type item struct{ secrets, folders []string }
	cases := []struct {
		prefix    string
		recursive bool
		want      item
	}{
		{"/", false, item{nil, []string{"/app/", "/other/"}}},
		{"/app/", false, item{[]string{"/app/a", "/app/prod", "/app/prod-x"}, []string{"/app/dev/", "/app/prod/"}}},
		{"/app/prod/", false, item{nil, []string{"/app/prod/api/", "/app/prod/db/"}}},
		{"/app/prod/db/", false, item{[]string{"/app/prod/db/pass"}, nil}},
		{"/app/prod/", true, item{[]string{"/app/prod/api/db", "/app/prod/db/pass"}, nil}},
		{"/app/", true, item{[]string{"/app/a", "/app/dev/z", "/app/prod", "/app/prod-x", "/app/prod/api/db", "/app/prod/db/pass"}, nil}},
		{"/", true, item{[]string{"/app/a", "/app/dev/z", "/app/prod", "/app/prod-x", "/app/prod/api/db", "/app/prod/db/pass", "/other/q"}, nil}},
		{"/nothing/", true, item{nil, nil}},
	}
	for _, tc := range cases {
		var ref []tcPageView
		for i := range c.Nodes {
			pages := tcListPages(t, c.Client(i), tc.prefix, tc.recursive, min)
			var gotS, gotF []string
			for k, p := range pages {
				gotS = append(gotS, tcView(pages)[k].Secrets...)
				gotF = append(gotF, p.Folders...)
				if tc.recursive && len(p.Folders) != 0 {
					t.Fatalf("node %d: recursive list %s returned folders %v", i, tc.prefix, p.Folders)
				}
				if k < len(pages)-1 && len(p.Secrets)+len(p.Folders) != 2 {
					t.Fatalf("node %d: list %s: page %d of %d has %d items, want full pages before the last", i, tc.prefix, k, len(pages), len(p.Secrets)+len(p.Folders))
				}
			}
			if fmt.Sprint(gotS) != fmt.Sprint(tc.want.secrets) || fmt.Sprint(gotF) != fmt.Sprint(tc.want.folders) {
				t.Fatalf("node %d: list %s (recursive %v): secrets %v folders %v; want %v and %v", i, tc.prefix, tc.recursive, gotS, gotF, tc.want.secrets, tc.want.folders)
			}
			if n := len(tc.want.secrets) + len(tc.want.folders); len(pages) != max(1, (n+1)/2) {
				t.Fatalf("node %d: list %s (recursive %v): %d pages for %d items of page_size 2", i, tc.prefix, tc.recursive, len(pages), n)
			}
			v := tcView(pages)
			if ref == nil {
				ref = v
			} else if fmt.Sprintf("%+v", v) != fmt.Sprintf("%+v", ref) {
				t.Fatalf("list %s (recursive %v) differs between nodes:\nnode 0: %+v\nnode %d: %+v", tc.prefix, tc.recursive, ref, i, v)
			}
		}
		// A page token is portable between nodes.
		if len(ref) > 1 {
			r, err := c.Client(f[1]).ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: tc.prefix, Recursive: tc.recursive, PageSize: 2, PageToken: ref[0].Next, ReadOptions: apitypes.ReadOptions{MinIndex: min}})
			if err != nil {
				t.Fatalf("page token of one node on another: %v", err)
			}
			if got := tcView([]apitypes.ListSecretsResponse{*r}); fmt.Sprintf("%+v", got[0]) != fmt.Sprintf("%+v", ref[1]) {
				t.Fatalf("list %s page 2 via another node: %+v, want %+v", tc.prefix, got[0], ref[1])
			}
		}
	}
}

// TestLeaderReadOnLeader: a leader read served by the leader itself (no
// heartbeat round; the read's audit commit confirms it) sees every write
// acknowledged before it, through any node; a deposed leader's pending
// confirmation fails; elsewhere reads are confirmed the usual way.
func TestLeaderReadOnLeader(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	l := c.Leader()
	f := c.Followers()
	leaderRead := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
	const path = "/leaderread/app/counter"
	if _, err := c.Client(f[0]).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		want := fmt.Sprint(i)
		if _, err := c.Client(f[i%2]).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(want)}); err != nil {
			t.Fatal(err)
		}
		got, err := c.Client(l).GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: leaderRead})
		if err != nil || string(got.Value) != want {
			t.Fatalf("leader read on the leader after write %d: %v %v", i, got, err)
		}
	}

	// The other reads that confirm through their audit commit.
	b, err := c.Client(l).BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: []string{path}, ReadOptions: leaderRead})
	if err != nil || len(b.Values) != 1 || string(b.Values[0].Value) != "20" {
		t.Fatalf("leader batch read on the leader: %+v %v", b, err)
	}
	ls, err := c.Client(l).ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/leaderread/app/", ReadOptions: leaderRead})
	if err != nil || len(ls.Secrets) != 1 || ls.Secrets[0].CurrentVersion != 21 {
		t.Fatalf("leader listing on the leader: %+v %v", ls, err)
	}

	ln := c.Nodes[l].Node()
	_, lr, err := ln.ReadStateConfirmLater(ctx, leaderRead)
	if err != nil || lr == nil {
		t.Fatalf("leader read on the leader: %v, %v (want a confirmation to make)", lr, err)
	}
	if _, other, err := c.Nodes[f[0]].Node().ReadStateConfirmLater(ctx, leaderRead); err != nil || other != nil {
		t.Fatalf("leader read on a follower: %v, %v (want confirmed by the leader already)", other, err)
	}
	if _, other, err := ln.ReadStateConfirmLater(ctx, apitypes.ReadOptions{}); err != nil || other != nil {
		t.Fatalf("stale read: %v, %v (want nothing to confirm)", other, err)
	}
	if err := lr.Confirm(); err != nil {
		t.Fatalf("confirm while still the leader: %v", err)
	}

	// Leadership moves: a read the old leader began in its term can no
	// longer be confirmed.
	if err := ln.TransferLeadership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	c.Eventually(20*time.Second, "another node to lead", func() bool { return c.Leader() != l })
	// The old leader learns the new term from the new leader's first
	// heartbeat (it may not have voted): from then on, never confirmed.
	c.Eventually(20*time.Second, "the deposed leader to refuse the read", func() bool { return lr.Confirm() != nil })
	if _, err := c.Client(l).GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: leaderRead}); err != nil {
		t.Fatalf("leader read through the old leader, now a follower: %v", err)
	}
}
