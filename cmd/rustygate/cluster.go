package main

import (
	"context"
	"net/http"
	"time"

	"github.com/rustygate/rustygate/cluster"
	"github.com/rustygate/rustygate/config"
	"github.com/rustygate/rustygate/loader"
)

// joinCluster connects to the cluster's Redis, announces this node and
// applies the cluster's bans to dp from now on.
func (g *gateway) joinCluster(cfg *config.Config, dp *loader.Datapath) (*cluster.Client, error) {
	cl, err := cluster.New(cfg.Cluster, cluster.NodeInfo{Version: version, Datapath: dp.Mode()}, g.log, g.metrics.Registry())
	if err != nil {
		return nil, err
	}
	cl.FollowBans(cluster.Datapath{DP: dp})
	g.cluster = cl
	g.log.Info("cluster: joined", "node", cl.Node().Name, "mode", cfg.Cluster.Redis.Mode, "redis_up", cl.Up())
	return cl, nil
}

// banTarget is where bans go: the cluster, which applies them here and
// on every node, or the datapath alone.
func (g *gateway) banTarget() banTarget {
	if g.cluster != nil {
		return g.cluster
	}
	return g.dp
}

// handleCluster serves GET /admin/cluster: this node, whether Redis
// answers, and the live nodes with their version and datapath mode.
func (g *gateway) handleCluster(w http.ResponseWriter, r *http.Request) {
	if g.cluster == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "cluster mode is off: set cluster.redis.addrs"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	nodes, err := g.cluster.Members(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"node": g.cluster.Node(), "redis_up": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": g.cluster.Node(), "redis_up": g.cluster.Up(), "nodes": nodes})
}
