// Package v1alpha1 holds ShareWarden's API: the SharedVolume custom resource (a volume's status,
// one per RWX claim) and the well-known names the components share (annotations, labels,
// finalizers, extended resources, object names, the managed storage class).
//
// Every annotation and label ShareWarden writes lives under the sharewarden.io/ prefix. A user
// or an operator sets a few (the opt-in on a storage class, the backing class on a claim); the
// others only ShareWarden's own components write, and the admission webhook refuses the system
// annotations (SystemAnnotations) on claims from anyone else.
package v1alpha1
