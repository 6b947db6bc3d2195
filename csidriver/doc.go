// Package csidriver is ShareWarden's face as a CSI driver (nfs.sharewarden.io): the identity
// service, and the node service that mounts a volume's export at its Service IP with validated,
// merged mount options, so that kubelet applies fsGroup and SELinux labels to ShareWarden
// volumes as it does to any CSI volume. The gRPC plumbing stays thin around pure functions
// (MergeMountOptions, publishParams); the mounts go through k8s.io/mount-utils.
package csidriver
