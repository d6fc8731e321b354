package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/bench"
	"github.com/cofferhq/coffer/client"
)

// runBench is `coffer bench`: a load generator against a running cluster.
func runBench(a *app, args []string) int {
	c := a.newCmd("bench", "[flags]", "Run a load workload against a cluster and print ops/s and latency percentiles")
	var (
		cfg      bench.Config
		targets  string
		jsonOut  bool
		prepare  bool
		token    string
		duration = c.fs.Duration("duration", 10*time.Second, "measured duration")
		warmup   = c.fs.Duration("warmup", 2*time.Second, "warm-up before measuring")
	)
	c.fs.StringVar(&cfg.Workload, "workload", "put", "put, get, mixed, generate or batch-get")
	c.fs.IntVar(&cfg.Concurrency, "concurrency", 64, "closed-loop clients")
	c.fs.IntVar(&cfg.ValueSize, "value-size", 256, "value size in bytes")
	c.fs.IntVar(&cfg.Keys, "keys", 1000, "number of secrets")
	c.fs.Float64Var(&cfg.ReadRatio, "ratio", 0.9, "mixed: fraction of reads")
	c.fs.StringVar(&cfg.Consistency, "consistency", "", "reads: stale (default) or leader")
	c.fs.IntVar(&cfg.BatchSize, "batch-size", 10, "batch-get: paths per request")
	c.fs.StringVar(&cfg.Prefix, "prefix", "/bench", "folder of the benchmark's secrets")
	c.fs.StringVar(&targets, "nodes", "", "comma-separated node URLs (default $COFFER_ADDR); clients are spread over them")
	c.fs.StringVar(&token, "token", "", "token (default $COFFER_TOKEN)")
	c.fs.BoolVar(&prepare, "prepare", true, "create the secrets first (existing ones are kept)")
	c.fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	if _, code := c.parse(args, 0, 0); code >= 0 {
		return code
	}
	cfg.Duration, cfg.Warmup = *duration, *warmup
	if token == "" {
		token = a.getenv(client.EnvToken)
	}
	cfg.Token = token
	tlsConf, err := client.TLSConfigForCAFile(a.getenv(client.EnvCACert))
	if err != nil {
		return a.fail(err)
	}
	cfg.TLS = tlsConf
	if targets == "" {
		targets = a.getenv(client.EnvAddr)
	}
	if targets == "" {
		targets = client.DefaultAddr
	}
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if !strings.Contains(t, "://") {
				t = "http://" + t
			}
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	if prepare {
		if err := bench.Prepare(a.ctx, cfg); err != nil {
			fmt.Fprintln(a.stderr, "error: prepare:", err)
			return 1
		}
	}
	res, err := bench.Run(a.ctx, cfg)
	if err != nil {
		fmt.Fprintln(a.stderr, "error:", err)
		return 1
	}
	if jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return 0
	}
	bench.Format(a.stdout, res)
	return 0
}
