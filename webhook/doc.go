// Package webhook serves ShareWarden's mutating admission webhook over HTTPS: the AdmissionReview
// protocol (controller-runtime's admission package) on /mutate/persistentvolumeclaims and
// /mutate/pods, health on /healthz and /readyz, Prometheus metrics on /metrics.
//
// The rewrite rules are not here but in package mutators. For each request the handlers check
// the kind and operation (others are allowed untouched), decode the object, gather the facts the
// rules need (storage classes and claims, from informer caches with a read-through to the API
// on a miss; whether the requester is one of --system-users), call the rules, and turn their
// answer into a response: a JSON patch, a plain allow, a denial, 400 for an undecodable request
// or 500 for a failed lookup. Run wires it up: the informer caches, HTTPS serving with
// certificate reloading, readiness once the caches have synced.
package webhook
