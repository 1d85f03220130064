// Package cluster is the state RustyGate instances share through Redis:
// the membership (a heartbeat per node), the counters of the rate limits
// of scope cluster, and the bans.
//
// A Client is one connection to Redis (standalone, Sentinel or Redis
// Cluster, see config.Cluster). Every command on the request path is
// bounded by cluster.redis.timeout; the first failure marks Redis down
// (logged once, rustygate_cluster_up 0) and from then on the request
// path does not wait on Redis at all: callers apply their own failure
// policy until a background probe finds Redis again (logged once,
// rustygate_cluster_up 1). Nothing here ever blocks longer than its
// timeout.
//
// Keys all start with cluster.key_prefix and carry a hash tag, so that
// the keys one script touches live in one Redis Cluster slot:
//
//	PREFIX{nodes}          sorted set: node name -> heartbeat expiry (ms)
//	PREFIX{nodes}:NAME     the node's description, with a TTL
//	PREFIXrl:{LIMITER:KEY} one rate limit key's GCRA state, with a TTL
//	PREFIX{bans}           sorted set: banned address -> expiry (ms)
//	PREFIX{bans}:log       stream of ban and unban events
//
// Bans are applied through a BanApplier (the datapath, kernel or
// userspace): the package never touches the kernel itself, and it knows
// nothing of HTTP.
package cluster
