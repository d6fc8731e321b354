package fsm

import (
	"encoding/base64"
	"strings"

	"github.com/cofferhq/coffer/errs"
)

// ListPage is one page of a folder listing.
type ListPage struct {
	Secrets []*Secret
	Folders []string
	Next    string
}

// List returns the secrets and next-level folders under prefix (a folder
// ending in "/"), in path order, at most pageSize items (secrets and folders
// together). keep, if set, filters secrets. The page token is the opaque key
// to resume from.
func (s *State) List(prefix string, recursive bool, pageSize int, pageToken string, keep func(*Secret) bool) (ListPage, error) {
	start := prefix
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			return ListPage{}, errs.New(errs.InvalidArgument, "invalid page_token for this prefix")
		}
		start = string(b)
	}
	var page ListPage
	for from, more := start, true; more; {
		resume := "" // set to skip a folder's contents
		s.Secrets.Ascend(from, func(sec *Secret) bool {
			k := sec.Path
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			rest := k[len(prefix):]
			if !recursive {
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					folder := prefix + rest[:i+1]
					if page.full(pageSize) {
						page.Next = token(folder)
						return false
					}
					page.Folders = append(page.Folders, folder)
					// Skip the folder's contents: they share its prefix and
					// are contiguous, and '0' is the byte after '/'.
					resume = folder[:len(folder)-1] + "0"
					return false
				}
			}
			if keep != nil && !keep(sec) {
				return true
			}
			if page.full(pageSize) {
				page.Next = token(k)
				return false
			}
			page.Secrets = append(page.Secrets, sec)
			return true
		})
		from, more = resume, resume != ""
	}
	return page, nil
}

func (p *ListPage) full(size int) bool { return len(p.Secrets)+len(p.Folders) >= size }

func token(resumeKey string) string { return base64.RawURLEncoding.EncodeToString([]byte(resumeKey)) }
