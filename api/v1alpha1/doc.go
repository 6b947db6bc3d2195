// Package v1alpha1 holds ShareWarden's API: the well-known names other components key on
// (annotations, labels, extended resources, the managed storage class) and, later, its custom
// resources.
//
// Every annotation ShareWarden reads lives under the sharewarden.io/ prefix. Some a user (or an
// operator) sets; the others only ShareWarden itself may write, and the admission webhook
// refuses them from anyone else: a tenant must never be able to point its claim at another
// tenant's data.
package v1alpha1
