package api

import (
	"net/http"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Request metrics are labelled by action name and error code only: never a
// path, value or token.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_requests_total", Help: "API requests by action and result code.",
	}, []string{"action", "code"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "coffer_request_duration_seconds", Help: "API request latency by action.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"action"})
)

func observe(action string, err error, start time.Time) {
	code := "ok"
	if err != nil {
		code = string(errs.CodeOf(err))
	}
	requestsTotal.WithLabelValues(action, code).Inc()
	requestSeconds.WithLabelValues(action).Observe(time.Since(start).Seconds())
}

// MetricsHandler serves /metrics for n in the Prometheus text format.
func MetricsHandler(n *node.Node) http.Handler {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
	}
	gauge("coffer_raft_commit_index", "Raft commit index.", func() float64 { c, _ := n.Indexes(); return float64(c) })
	gauge("coffer_raft_applied_index", "Raft applied index.", func() float64 { _, a := n.Indexes(); return float64(a) })
	gauge("coffer_raft_apply_lag", "Committed entries not yet applied.", func() float64 { c, a := n.Indexes(); return float64(c) - float64(a) })
	gauge("coffer_raft_is_leader", "1 if this node leads.", func() float64 {
		if n.IsLeader() {
			return 1
		}
		return 0
	})
	gauge("coffer_secrets", "Secrets stored.", func() float64 { return float64(n.State().Secrets.Len()) })
	gauge("coffer_secret_versions", "Secret versions stored (enabled or destroyed).", func() float64 { return float64(n.State().VersionCount) })
	gauge("coffer_secrets_bound_to_inactive_key", "Secrets bound to a KMS key that is not enabled (disabled, pending deletion or destroyed).",
		func() float64 { return float64(n.State().InactiveBound()) })
	gauge("coffer_audit_seq", "Sequence number of the last applied audit entry.", func() float64 { return float64(n.State().AuditHead.Seq) })
	reg.MustRegister(node.LeaderChanges, node.BatchCommands, node.ForwardCommands, node.AuditEntriesPerBatch, node.CommitSeconds, node.ForwardSeconds, node.ClusterAuthRefusals)
	reg.MustRegister(LimitCollectors()...)
	reg.MustRegister(requestsTotal, requestSeconds, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
