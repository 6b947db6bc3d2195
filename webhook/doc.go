// Package webhook serves ShareWarden's mutating admission webhook over HTTPS: the AdmissionReview
// protocol (controller-runtime's admission package) on /mutate/persistentvolumeclaims and
// /mutate/pods, health on /healthz and /readyz, Prometheus metrics on /metrics.
//
// It is plumbing only. For each request it decodes the object, gathers the facts the rules
// need (storage classes and claims, from informer caches with a read-through to the API on a
// miss), calls the pure rules in package mutators, and answers with a JSON patch or a denial.
package webhook
