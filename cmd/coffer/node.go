package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

var nodeCommands = []command{
	{"list", "List the cluster's servers", nodeList},
	{"join", "Admit the node with the given gossip address", nodeJoin},
	{"remove", "Remove a server from the cluster", nodeRemove},
	{"transfer-leadership", "Hand leadership to another voter", nodeTransferLeadership},
}

func runNodeGroup(a *app, args []string) int { return a.dispatch("node", nodeCommands, args) }

func nodeList(a *app, args []string) int {
	c := a.newCmd("node list", "[flags]", "Lists the cluster's servers.").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.ClusterResponse
	if err := c.call("sys/cluster", &apitypes.ClusterRequest{ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		return 0
	}
	t := newTable(a.stdout, "ID", "CLUSTER ADDR", "HTTP ADDR", "SUFFRAGE", "STATE", "LAST CONTACT", "APPLIED INDEX", "LEADER")
	for _, m := range resp.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		t.row(m.NodeID, orDash(m.ClusterAddr), orDash(m.HTTPAddr), orDash(m.Suffrage), orDash(m.State),
			fmtContact(m.LastContact), strconv.FormatUint(m.AppliedIndex, 10), leader)
	}
	t.flush()
	return 0
}

func fmtContact(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := time.Since(*t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String() + " ago"
}

func nodeJoin(a *app, args []string) int {
	c := a.newCmd("node join", "GOSSIP_ADDR [flags]", "Makes the cluster admit the node listening for gossip at GOSSIP_ADDR (host:port).").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if err := c.call("sys/join", &apitypes.JoinRequest{Addr: pos[0]}, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Asked the cluster to admit %s\n", pos[0])
	}
	return 0
}

func nodeRemove(a *app, args []string) int {
	c := a.newCmd("node remove", "NODE_ID [flags]", "Removes the server NODE_ID from the cluster.").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if err := c.call("sys/removePeer", &apitypes.RemovePeerRequest{NodeID: pos[0]}, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Removed %s\n", pos[0])
	}
	return 0
}

func nodeTransferLeadership(a *app, args []string) int {
	c := a.newCmd("node transfer-leadership", "[NODE_ID] [flags]",
		"Hands leadership to NODE_ID, or to the most up-to-date voter when none is given.").withConn()
	pos, rc := c.parse(args, 0, 1)
	if rc >= 0 {
		return rc
	}
	req := &apitypes.TransferLeadershipRequest{}
	if len(pos) == 1 {
		req.NodeID = pos[0]
	}
	if err := c.call("sys/transferLeadership", req, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintln(a.stdout, "Leadership transferred")
	}
	return 0
}
