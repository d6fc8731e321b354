package fsm

import (
	"encoding/base64"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/errs"
)

// ftListPaths mixes secrets and folders that share names (/a/b and /a/b/c)
// with names using '-', '.', '_' and '0' around '/', which sort just before
// and after '/' (0x2d '-', 0x2e '.', 0x2f '/', 0x30 '0').
var ftListPaths = []string{
	"/a/b", "/a/b/c", "/a/b/c/d", "/a/b/zz", "/a/b-c", "/a/b.c", "/a/b-/x", "/a/b./y", "/a/-b", "/a/.b",
	"/a/b_c", "/a/bc", "/a/c", "/a/b0", "/a/b0/q", "/a/-/m", "/a/.x/n", "/ab", "/a-", "/a.x/y", "/z", "/a/b/c-", "/a/b/c.",
}

func ftListState(t testing.TB, paths []string) (*ftHarness, *State) {
	h := newFtHarness(t)
	h.boot()
	var envs []Envelope
	for _, p := range paths {
		envs = append(envs, ftEnv(t, CmdCreateSecret, &CreateSecret{Path: p, UID: "uid" + p, KMSKey: "default"}, ""))
	}
	for i, r := range h.apply(envs...) {
		if r.Err != nil {
			t.Fatalf("create %s: %v", paths[i], r.Err)
		}
	}
	return h, h.f.State()
}

type ftItem struct {
	name   string
	folder bool
}

// ftOracle lists prefix the slow way: every secret under prefix, or its
// next-level folder, in byte order.
func ftOracle(paths []string, prefix string, recursive bool, keep func(string) bool) []ftItem {
	seen := map[string]bool{}
	var out []ftItem
	for _, p := range paths {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		rest := p[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 && !recursive {
			f := prefix + rest[:i+1]
			if !seen[f] {
				seen[f] = true
				out = append(out, ftItem{f, true})
			}
			continue
		}
		if keep == nil || keep(p) {
			out = append(out, ftItem{p, false})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// ftItems merges a page's secrets and folders in byte order.
func ftItems(p ListPage) []ftItem {
	var out []ftItem
	for _, s := range p.Secrets {
		out = append(out, ftItem{s.Path, false})
	}
	for _, f := range p.Folders {
		out = append(out, ftItem{f, true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func TestListFoldersAndSharedNames(t *testing.T) {
	_, st := ftListState(t, ftListPaths)
	for _, c := range []struct {
		prefix  string
		secrets []string
		folders []string
	}{
		{"/", []string{"/a-", "/ab", "/z"}, []string{"/a.x/", "/a/"}},
		{"/a/", []string{"/a/-b", "/a/.b", "/a/b", "/a/b-c", "/a/b.c", "/a/b0", "/a/b_c", "/a/bc", "/a/c"},
			[]string{"/a/-/", "/a/.x/", "/a/b-/", "/a/b./", "/a/b/", "/a/b0/"}},
		{"/a/b/", []string{"/a/b/c", "/a/b/c-", "/a/b/c.", "/a/b/zz"}, []string{"/a/b/c/"}},
		{"/a/b/c/", []string{"/a/b/c/d"}, nil},
		{"/a/b-/", []string{"/a/b-/x"}, nil},
		{"/a/b./", []string{"/a/b./y"}, nil},
		{"/a/b0/", []string{"/a/b0/q"}, nil},
		{"/a/bc/", nil, nil},
		{"/nothing/", nil, nil},
	} {
		page, err := st.List(c.prefix, false, 1000, "", nil)
		if err != nil {
			t.Fatalf("List %s: %v", c.prefix, err)
		}
		var got []string
		for _, s := range page.Secrets {
			got = append(got, s.Path)
		}
		if !reflect.DeepEqual(got, c.secrets) || !reflect.DeepEqual(page.Folders, c.folders) || page.Next != "" {
			t.Errorf("List %s: secrets %q folders %q next %q\nwant secrets %q folders %q", c.prefix, got, page.Folders, page.Next, c.secrets, c.folders)
		}
		want := ftOracle(ftListPaths, c.prefix, false, nil)
		if g := ftItems(page); !reflect.DeepEqual(g, want) && !(len(g) == 0 && len(want) == 0) {
			t.Errorf("List %s disagrees with the oracle:\n%v\n%v", c.prefix, g, want)
		}
	}
	// Recursive listings return every secret below the prefix and no folders.
	for _, prefix := range []string{"/", "/a/", "/a/b/"} {
		page, err := st.List(prefix, true, 1000, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := ftOracle(ftListPaths, prefix, true, nil); !reflect.DeepEqual(ftItems(page), want) || page.Folders != nil {
			t.Errorf("recursive List %s: %v, want %v", prefix, ftItems(page), want)
		}
	}
}

// TestListPagination walks every listing with every page size: the pages
// together give the full listing exactly once, in order, each at most the
// page size, with a token only when something follows.
func TestListPagination(t *testing.T) {
	_, st := ftListState(t, ftListPaths)
	keeps := map[string]func(string) bool{
		"all":      nil,
		"no-b":     func(p string) bool { return !strings.Contains(p, "b") },
		"only-dot": func(p string) bool { return strings.Contains(p, ".") },
	}
	for _, prefix := range []string{"/", "/a/", "/a/b/", "/a/b/c/", "/q/"} {
		for _, recursive := range []bool{false, true} {
			for kname, keep := range keeps {
				var kf func(*Secret) bool
				if keep != nil {
					kf = func(s *Secret) bool { return keep(s.Path) }
				}
				want := ftOracle(ftListPaths, prefix, recursive, keep)
				for size := 1; size <= len(want)+1; size++ {
					var got []ftItem
					token := ""
					for pages := 0; ; pages++ {
						if pages > len(want)+1 {
							t.Fatalf("%s rec=%v keep=%s size %d: pagination does not end", prefix, recursive, kname, size)
						}
						page, err := st.List(prefix, recursive, size, token, kf)
						if err != nil {
							t.Fatalf("%s rec=%v keep=%s size %d token %q: %v", prefix, recursive, kname, size, token, err)
						}
						items := ftItems(page)
						if len(items) > size {
							t.Fatalf("%s size %d: page of %d items", prefix, size, len(items))
						}
						if page.Next != "" && len(items) < size {
							t.Fatalf("%s rec=%v keep=%s size %d: short page (%d) with a next token", prefix, recursive, kname, size, len(items))
						}
						got = append(got, items...)
						if page.Next == "" {
							break
						}
						if len(got) >= len(want) {
							t.Fatalf("%s rec=%v keep=%s size %d: a next token after the last item", prefix, recursive, kname, size)
						}
						token = page.Next
					}
					if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
						t.Fatalf("%s rec=%v keep=%s size %d:\npaged %v\nwant  %v", prefix, recursive, kname, size, got, want)
					}
				}
			}
		}
	}
}

func TestListPageTokens(t *testing.T) {
	h, st := ftListState(t, ftListPaths)
	// A page that ends right before the folder /a/b/ resumes with it.
	full := ftOracle(ftListPaths, "/a/", false, nil)
	at := -1
	for i, it := range full {
		if it.name == "/a/b/" {
			at = i
		}
	}
	page, err := st.List("/a/", false, at, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if page.Next == "" {
		t.Fatal("no next token")
	}
	next, err := st.List("/a/", false, 2, page.Next, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items := ftItems(next); len(items) == 0 || items[0] != (ftItem{"/a/b/", true}) {
		t.Fatalf("page after the boundary starts with %v, want folder /a/b/", items)
	}

	// Bad tokens are InvalidArgument.
	for name, tok := range map[string]string{
		"not base64":      "!!!",
		"padded base64":   base64.URLEncoding.EncodeToString([]byte("/a/b")) + "==",
		"other prefix":    base64.RawURLEncoding.EncodeToString([]byte("/z")),
		"parent of it":    base64.RawURLEncoding.EncodeToString([]byte("/")),
		"std alphabet +/": "+/+/",
	} {
		_, err := st.List("/a/", false, 10, tok, nil)
		if !errs.Is(err, errs.InvalidArgument) {
			t.Errorf("token %s: got %v, want InvalidArgument", name, err)
		}
	}
	// A token from another prefix's listing is refused there.
	pz, _ := st.List("/", false, 1, "", nil)
	if pz.Next == "" {
		t.Fatal("no token")
	}
	if _, err := st.List("/a/b/", false, 1, pz.Next, nil); !errs.Is(err, errs.InvalidArgument) {
		t.Errorf("a token of / accepted for /a/b/: %v", err)
	}

	// A token whose resume key was deleted meanwhile still resumes in order.
	order := ftOracle(ftListPaths, "/a/", false, nil)
	k := 3
	for order[k].folder {
		k++
	}
	p1, _ := st.List("/a/", false, k, "", nil)
	resume := order[k]
	ftWantCode(t, "delete resume key", h.one(ftEnv(t, CmdDeleteSecret, &DeleteSecret{Path: resume.name}, "")), "")
	p2, err := h.f.State().List("/a/", false, k, p1.Next, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items := ftItems(p2); len(items) == 0 || items[0] != order[k+1] {
		t.Fatalf("after deleting the resume key the next page starts with %v", items)
	}
}
