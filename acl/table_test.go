package acl

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The action table is the one source of truth for action names and their
// properties: these tests tie the client and the docs to it (the server's
// routes are tied in api/routes_test.go).

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestActionTableInvariants(t *testing.T) {
	routes := map[string]bool{}
	for _, a := range AllActions() {
		if a.Kind != Read && a.Kind != Write {
			t.Errorf("%s: kind %v", a.Name, a.Kind)
		}
		if routes[a.Route] {
			t.Errorf("route %s twice", a.Route)
		}
		routes[a.Route] = true
		if got, ok := LookupRoute(a.Route); !ok || got.Name != a.Name {
			t.Errorf("LookupRoute(%q) = %v, %v", a.Route, got, ok)
		}
		if strings.HasPrefix(a.Name, "sys.") && !a.Admin && !a.Public {
			t.Errorf("%s: a cluster action must need admin or be public", a.Name)
		}
		if a.Event == "" && a.Name != "sys.health" {
			t.Errorf("%s: no audit event", a.Name)
		}
		if a.AccessPolicy && !strings.HasPrefix(a.Event, "secrets.") {
			t.Errorf("%s: only secret actions honour access policies", a.Name)
		}
		if a.Name == "putPolicy" || a.Name == "deletePolicy" {
			if !a.Admin {
				t.Errorf("%s must need admin (SPEC §6)", a.Name)
			}
		}
	}
	if !RequiresAdmin("sys.rewrap") || RequiresAdmin("getSecretValue") || RequiresAdmin("nope") {
		t.Error("RequiresAdmin disagrees with the table")
	}
	if HonoursAccessPolicy("describeSecret") || HonoursAccessPolicy("listSecrets") || !HonoursAccessPolicy("getSecretValue") || !HonoursAccessPolicy("nope") {
		t.Error("HonoursAccessPolicy disagrees with the table")
	}
}

// TestActionTableClient: every action the Go client names is in the table,
// every table route is reachable through the client, and the client's
// retry-safe set is exactly the table's read actions.
func TestActionTableClient(t *testing.T) {
	var src strings.Builder
	files, _ := filepath.Glob(filepath.Join("..", "client", "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	s := src.String()
	for _, a := range AllActions() {
		if !strings.Contains(s, `"`+a.Route+`"`) && !strings.Contains(s, `"/v1/`+a.Route+`"`) {
			t.Errorf("client: no method names action %s (route %q)", a.Name, a.Route)
		}
	}
	for _, m := range regexp.MustCompile(`call\[[^\]]+\]\(c, ctx, "([^"]+)"`).FindAllStringSubmatch(s, -1) {
		if _, ok := LookupRoute(m[1]); !ok {
			t.Errorf("client calls %q, which is not in the action table", m[1])
		}
	}
	block := regexp.MustCompile(`(?s)var readActions = map\[string\]bool\{(.*?)\n\}`).FindStringSubmatch(s)
	if block == nil {
		t.Fatal("client: readActions not found")
	}
	var got, want []string
	for _, m := range regexp.MustCompile(`"([^"]+)": true`).FindAllStringSubmatch(block[1], -1) {
		got = append(got, m[1])
	}
	for _, a := range AllActions() {
		if a.Kind == Read {
			want = append(want, a.Route)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("client readActions %v\n want the table's read actions %v", got, want)
	}
}

// TestActionTableDocs: docs/ACCESS-CONTROL.md's action table is the table,
// and docs/API.md's summary gives every action its kind and audit event.
func TestActionTableDocs(t *testing.T) {
	ac := readRepoFile(t, "docs/ACCESS-CONTROL.md")
	sec := regexp.MustCompile(`(?s)<!-- action-table -->(.*?)<!-- /action-table -->`).FindStringSubmatch(ac)
	if sec == nil {
		t.Fatal("docs/ACCESS-CONTROL.md: no action table")
	}
	var want []string
	want = append(want, "| action | kind | admin | access policy |", "|---|---|---|---|")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return ""
	}
	for _, a := range AllActions() {
		want = append(want, "| `"+a.Name+"` | "+a.Kind.String()+" | "+yes(a.Admin)+" | "+yes(a.AccessPolicy)+" |")
	}
	if got := strings.TrimSpace(sec[1]); got != strings.Join(want, "\n") {
		t.Errorf("docs/ACCESS-CONTROL.md action table differs from acl's; want:\n%s", strings.Join(want, "\n"))
	}

	api := readRepoFile(t, "docs/API.md")
	i := strings.Index(api, "## Summary: actions, policies and audit events")
	if i < 0 {
		t.Fatal("docs/API.md: no summary table")
	}
	var rows [][]string
	for _, line := range strings.Split(api[i:], "\n") {
		if strings.HasPrefix(line, "| `") || strings.HasPrefix(line, "| (") {
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) == 3 {
				rows = append(rows, cells)
			}
		}
	}
	for _, a := range AllActions() {
		var row []string
		for _, r := range rows {
			if strings.Contains(r[0], "`"+a.Route+"`") || strings.Contains(r[0], "`GET "+a.Route+"`") {
				row = r
				break
			}
		}
		if row == nil {
			t.Errorf("docs/API.md summary: no row for %s", a.Route)
			continue
		}
		kind := a.Kind.String()
		switch {
		case a.Admin && strings.HasPrefix(a.Name, "sys."):
			kind = "admin"
		case a.Event == "":
			kind = "—"
		}
		if strings.TrimSpace(row[1]) != kind {
			t.Errorf("docs/API.md summary: %s is %q, the table says %q", a.Route, strings.TrimSpace(row[1]), kind)
		}
		if a.Event != "" && !strings.Contains(row[2], "`"+a.Event+"`") {
			t.Errorf("docs/API.md summary: %s's row doesn't name its audit event %s", a.Route, a.Event)
		}
	}
}
