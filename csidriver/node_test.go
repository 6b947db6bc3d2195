package csidriver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestMergeMountOptions(t *testing.T) {
	defaults := []string{"hard", "noresvport", "retrans=3", "timeo=150", "vers=4.2"}
	cases := []struct {
		name     string
		user     []string
		readOnly bool
		want     []string
		err      string // substring of the error; "" for none
	}{
		{name: "defaults", want: defaults},
		{name: "read-only", readOnly: true, want: []string{"hard", "noresvport", "retrans=3", "ro", "timeo=150", "vers=4.2"}},
		{name: "override by key", user: []string{"timeo=600", "nfsvers=4.1", "soft"},
			want: []string{"noresvport", "retrans=3", "soft", "timeo=600", "vers=4.1"}},
		{name: "comma lists and nconnect", user: []string{"nconnect=8,rsize=1048576", "wsize=1048576"},
			want: []string{"hard", "nconnect=8", "noresvport", "retrans=3", "rsize=1048576", "timeo=150", "vers=4.2", "wsize=1048576"}},
		{name: "SELinux context from kubelet", user: []string{`context="system_u:object_r:container_file_t:s0:c1,c2"`},
			want: append([]string{`context="system_u:object_r:container_file_t:s0:c1,c2"`}, defaults...)},
		{name: "typo", user: []string{"hrad"}, err: `unknown mount option "hrad"`},
		{name: "NFSv3", user: []string{"nfsvers=3"}, err: "want one of 4.1, 4.2"},
		{name: "NFSv4.0", user: []string{"vers=4.0"}, err: "want one of 4.1, 4.2"},
		{name: "udp", user: []string{"udp"}, err: "TCP only"},
		{name: "proto=udp", user: []string{"proto=udp"}, err: "want one of tcp, tcp6"},
		{name: "bad number", user: []string{"timeo=ten"}, err: `"timeo=ten": want a whole number`},
		{name: "nconnect too high", user: []string{"nconnect=64"}, err: "from 1 to 16"},
		{name: "rsize not a block", user: []string{"rsize=1000"}, err: "multiple of 4096"},
		{name: "value on a flag", user: []string{"hard=1"}, err: `takes no value; write "hard"`},
		{name: "missing value", user: []string{"timeo"}, err: "needs a value"},
		{name: "contradiction", user: []string{"hard", "soft"}, err: `"hard" and "soft" contradict`},
		{name: "rw on a read-only volume", user: []string{"rw"}, readOnly: true, err: "contradicts a read-only volume"},
		{name: "kerberos", user: []string{"sec=krb5"}, err: "want one of sys"},
		{name: "every problem at once", user: []string{"hrad", "timeo=x"}, err: `unknown mount option "hrad"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeMountOptions(tc.user, tc.readOnly)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error with %q, got %v (options %v)", tc.err, err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
	// Every problem is reported at once.
	_, err := MergeMountOptions([]string{"hrad", "timeo=x"}, false)
	if err == nil || !strings.Contains(err.Error(), "hrad") || !strings.Contains(err.Error(), "timeo=x") {
		t.Errorf("want both problems, got %v", err)
	}
}

func FuzzMergeMountOptions(f *testing.F) {
	for _, s := range []string{"", "hard", "timeo=600,nfsvers=4.1", "soft,hard", "nconnect=99", "=", ",,", "context=a=b"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, opts string, ro bool) {
		got, err := MergeMountOptions([]string{opts}, ro)
		if err != nil {
			return
		}
		// What was accepted is accepted again, unchanged: the merge is a fixed point.
		again, err := MergeMountOptions(got, ro)
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("%q merged to %v, which merges to %v (%v)", opts, got, again, err)
		}
	})
}

func publishRequest(target string, flags ...string) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:   "vol-1",
		TargetPath: target,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
		},
		VolumeContext: map[string]string{ContextServer: "10.96.0.5", ContextShare: "/export"},
	}
}

func TestPublishParams(t *testing.T) {
	ok := publishRequest("/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/v/mount")
	p, err := publishParams(ok)
	if err != nil {
		t.Fatal(err)
	}
	if p.source != "10.96.0.5:/export" || !p.fallback || !slices.Contains(p.options, "vers=4.2") {
		t.Errorf("publish %+v", p)
	}
	v6 := publishRequest("/t")
	v6.VolumeContext[ContextServer] = "fd00::5"
	if p, err := publishParams(v6); err != nil || p.source != "[fd00::5]:/export" {
		t.Errorf("IPv6 source %q (%v)", p.source, err)
	}
	if p, _ := publishParams(publishRequest("/t", "vers=4.1")); p.fallback {
		t.Error("a version the user chose must not fall back")
	}

	bad := []struct {
		name string
		edit func(*csi.NodePublishVolumeRequest)
		want string
	}{
		{"no volume id", func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }, "volume_id"},
		{"relative target", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "mnt" }, "target_path"},
		{"no capability", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }, "volume_capability"},
		{"block", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		}, "block access"},
		{"fs type", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().FsType = "ext4"
		}, "fs_type"},
		{"no server", func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, ContextServer) }, "Service IP"},
		{"hostname server", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[ContextServer] = "nfs.example" }, "Service IP"},
		{"relative share", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[ContextShare] = "export" }, "absolute path"},
		{"bad option", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().MountFlags = []string{"nfsvers=3"}
		}, "nfsvers=3"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			req := publishRequest("/t")
			tc.edit(req)
			_, err := publishParams(req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want InvalidArgument naming %q, got %v", tc.want, err)
			}
		})
	}
}

// refusing42 is a mounter whose NFS server (or client) lacks 4.2.
type refusing42 struct{ *mount.FakeMounter }

func (m refusing42) Mount(source, target, fstype string, options []string) error {
	if slices.Contains(options, "vers=4.2") {
		return errors.New("mount.nfs: Protocol not supported")
	}
	return m.FakeMounter.Mount(source, target, fstype, options)
}

func TestNodePublishAndUnpublish(t *testing.T) {
	ctx := context.Background()
	fake := mount.NewFakeMounter(nil)
	n := &NodeServer{NodeID: "node-a", Mounter: fake}
	target := filepath.Join(t.TempDir(), "mount")
	req := publishRequest(target, "timeo=600")
	if _, err := n.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	mounts, _ := fake.List()
	if len(mounts) != 1 || mounts[0].Device != "10.96.0.5:/export" || mounts[0].Type != "nfs" || !slices.Contains(mounts[0].Opts, "timeo=600") || !slices.Contains(mounts[0].Opts, "vers=4.2") {
		t.Fatalf("mounts %+v", mounts)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("target not created: %v", err)
	}
	// Idempotent: a second publish mounts nothing more.
	if _, err := n.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := fake.List(); len(mounts) != 1 {
		t.Errorf("published twice: %+v", mounts)
	}
	if _, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := fake.List(); len(mounts) != 0 {
		t.Errorf("still mounted: %+v", mounts)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("target left behind: %v", err)
	}
	// Unpublishing what is gone is fine.
	if _, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: target}); err != nil {
		t.Errorf("second unpublish: %v", err)
	}
}

func TestNodePublishFallsBackTo41(t *testing.T) {
	ctx := context.Background()
	fake := mount.NewFakeMounter(nil)
	n := &NodeServer{NodeID: "node-a", Mounter: refusing42{fake}}
	if _, err := n.NodePublishVolume(ctx, publishRequest(filepath.Join(t.TempDir(), "m"))); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := fake.List(); len(mounts) != 1 || !slices.Contains(mounts[0].Opts, "vers=4.1") {
		t.Errorf("want a 4.1 mount, got %+v", mounts)
	}
	// A version the user chose is not second-guessed.
	_, err := n.NodePublishVolume(ctx, publishRequest(filepath.Join(t.TempDir(), "m"), "vers=4.2"))
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "Protocol not supported") {
		t.Errorf("want the mount error, got %v", err)
	}
}

func TestNodeInfoAndIdentity(t *testing.T) {
	ctx := context.Background()
	if _, err := (&NodeServer{}).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("no node name: %v", err)
	}
	info, err := (&NodeServer{NodeID: "node-a"}).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || info.NodeId != "node-a" {
		t.Errorf("info %+v %v", info, err)
	}
	id := &IdentityServer{Version: "1.2.3", Ready: func() bool { return false }}
	pi, _ := id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	pr, _ := id.Probe(ctx, &csi.ProbeRequest{})
	if pi.Name != swv1.CSIDriverName || pi.VendorVersion != "1.2.3" || pr.Ready.GetValue() {
		t.Errorf("plugin info %+v, probe %+v", pi, pr)
	}
}
