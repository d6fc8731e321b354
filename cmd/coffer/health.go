package main

import (
	"fmt"
	"net/http"
)

func runHealth(a *app, args []string) int {
	c := a.newCmd("health", "[flags]",
		"Asks a node for its health. Exits 0 when the node answers 200 (serving), 1 otherwise;\nmeant for health checks (needs no token).").withConn()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	h, status, err := cl.Health(a.ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		c.printValue(h)
	} else {
		state := "serving"
		if status != http.StatusOK {
			state = fmt.Sprintf("not serving (HTTP %d)", status)
		}
		leader := orDash(h.LeaderID)
		kv(a.stdout,
			"Node", h.NodeID,
			"State", state,
			"Role", orDash(h.Role),
			"Leader", leader,
			"Applied index", fmt.Sprint(h.AppliedIndex),
			"Initialized", fmt.Sprint(h.Initialized))
		for _, w := range h.Warnings {
			fmt.Fprintf(a.stdout, "Warning: %s\n", w)
		}
	}
	if status != http.StatusOK {
		return 1
	}
	return 0
}
