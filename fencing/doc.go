// Package fencing keeps at most one NFS server serving a volume at any instant, and moves a
// dead server's volume elsewhere quickly.
//
// Each server holds a coordination.k8s.io Lease named after its volume (Holder). It serves
// only while it holds the lease and stops by itself — ganesha is killed at once — when it has
// not managed to renew for D - M (lease duration minus safety margin), measured on its own
// monotonic clock from the moment it *sent* its last successful renewal. Nobody else may take
// the lease before observing it unchanged for a full D on their own monotonic clock, and an
// observation of a renewal always comes after the renewal was sent. So the old server has
// stopped at least M before anyone else may start: the argument compares durations on each
// process's own clock, never timestamps across machines, so clock skew between nodes does not
// matter; only clock rate drift does, and M (default 3 s of a 10 s lease) covers it and the
// time to kill ganesha many times over.
//
// The controller's Fencer watches the leases. Once a lease has stayed unchanged for D plus its
// own margin (default 2 s), the holder is known to have stopped serving. The Fencer then
// releases the lease with a compare-and-swap update (a renewal that raced it wins and cancels
// the fencing), force-deletes the old server pod, deletes the backing volume's
// VolumeAttachment on the old node so the RWO volume can attach elsewhere at once, and records
// the holder and its node on the released lease. From there the provisioner lists the node in
// the volume's status.fencedNodes, which the scheduler extender keeps the volume's servers and
// consumers off. The replacement server may take a released lease at once: the release is
// itself the proof that D has passed.
//
// The NodeFencer fences a node as a whole: when a server was fenced off it and the node itself
// is not Ready, it labels the node sharewarden.io/fenced (which the extender keeps every
// ShareWarden server and consumer off), optionally taints it out-of-service and force-deletes
// the consumers there, and unfences it once it has been Ready again for the settle period.
package fencing
