// Package extender is ShareWarden's kube-scheduler extender: an HTTP(S) server speaking the
// extender protocol (k8s.io/kube-scheduler/extender/v1) with two verbs, filter and prioritize.
//
// Only pods that carry the webhook's markers reach it (the scheduler configuration declares them
// as managedResources with ignoredByScheduler: true):
//
//   - NFS server pods (ResourceServer) are kept off fenced, NotReady and unreachable nodes and off
//     nodes their backing volume cannot reach, and prefer nodes holding the data, then nodes
//     running fewer servers, then the zone where most of the volume's consumers run.
//   - Consumer pods (ResourceConsumer) are kept off fenced nodes and off the node their volume's
//     server is being failed over from, and prefer the server's node and zone.
//
// Decisions are pure functions (filter, score) of the pod, the candidate nodes and a State
// gathered once per request from a Store, which informer event handlers keep up to date.
// See docs/extender.md.
package extender
