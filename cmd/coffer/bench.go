package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/bench"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
)

// runBench is `coffer bench`: a load generator against a running cluster.
func runBench(a *app, args []string) int {
	c := a.newCmd("bench", "[flags]", "Run a load workload against a cluster and print ops/s and latency percentiles")
	var (
		cfg      bench.Config
		targets  string
		target   string
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
	c.fs.StringVar(&target, "target", "all", "which of --nodes get clients: all, followers (those following now) or leader")
	c.fs.StringVar(&token, "token", "", "token (default $COFFER_TOKEN)")
	c.fs.BoolVar(&prepare, "prepare", true, "create the secrets first (existing ones are kept)")
	c.fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	if _, code := c.parse(args, 0, 0); code >= 0 {
		return code
	}
	if target != "all" && target != "followers" && target != "leader" {
		return c.usageErr("--target must be all, followers or leader (got %q)", target)
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
	if cfg.Targets, err = pickTargets(a.ctx, cfg.Targets, target, a.getenv(client.EnvCACert)); err != nil {
		return a.fail(err)
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

// pickTargets keeps the nodes of urls that --target asks for, by the role
// each reports in its health answer: load can be spread over the followers,
// or pinned to the leader, without knowing which node leads now.
func pickTargets(ctx context.Context, urls []string, target, cacert string) ([]string, error) {
	if target == "all" {
		return urls, nil
	}
	var picked []string
	for _, u := range urls {
		cl, err := client.New(u, "", client.WithCACertFile(cacert))
		if err != nil {
			return nil, err
		}
		h, _, err := cl.Health(ctx)
		if err != nil {
			return nil, fmt.Errorf("--target %s: health of %s: %w", target, u, err)
		}
		if (target == "leader" && h.Role == "leader") || (target == "followers" && h.Role == "follower") {
			picked = append(picked, u)
		}
	}
	if len(picked) == 0 {
		return nil, errs.New(errs.Unavailable, "--target %s: no node of %s has that role now", target, strings.Join(urls, ", "))
	}
	return picked, nil
}
