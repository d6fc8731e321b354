package audit

// PageTokenAt returns the queryAudit page token that resumes at seq: with
// limit 1 and no filter, the answer is the entry at seq when the node holds
// it. coffer audit verify --file --addr reads the cluster's hashes with it.
func PageTokenAt(seq uint64) string { return encodePageToken(seq) }

// FirstMismatch returns the index of the first of points (heads of one
// chain, in ascending seq order) whose hash differs from the reference
// chain's at the same seq, as ref reports it, or len(points) when none does.
// Two chains that differ at some seq differ at every later one (each hash
// covers the previous), so a binary search finds it with O(log n) lookups.
func FirstMismatch(points []Head, ref func(seq uint64) (string, error)) (int, error) {
	lo, hi := 0, len(points) // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		h, err := ref(points[mid].Seq)
		if err != nil {
			return 0, err
		}
		if h == points[mid].Hash {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// DiffFields names the fields in which two entries differ (hash and
// prev_hash included), for saying what an altered entry changed without
// printing either value.
func DiffFields(a, b *Entry) []string {
	var out []string
	add := func(differ bool, name string) {
		if differ {
			out = append(out, name)
		}
	}
	add(a.Seq != b.Seq, "seq")
	add(!a.Time.Equal(b.Time), "time")
	add(a.Node != b.Node, "node")
	add(a.RequestID != b.RequestID, "request_id")
	add(a.Action != b.Action, "action")
	add(a.Principal.Accessor != b.Principal.Accessor, "principal.accessor")
	add(a.Principal.Name != b.Principal.Name, "principal.name")
	add(a.SourceIP != b.SourceIP, "source_ip")
	add(a.Path != b.Path, "path")
	add(a.Version != b.Version, "version")
	add(a.KMSKey != b.KMSKey, "kms_key")
	add(a.KMSKeyVersion != b.KMSKeyVersion, "kms_key_version")
	add(a.Result != b.Result, "result")
	add(a.ErrorCode != b.ErrorCode, "error_code")
	add(a.Reason != b.Reason, "reason")
	add(a.PrevHash != b.PrevHash, "prev_hash")
	add(a.Hash != b.Hash, "hash")
	return out
}
