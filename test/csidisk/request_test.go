package csidisk

import (
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const mib = 1 << 20

// wantCode checks err has code (codes.OK for no error) and, if msg is set, says it.
func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code %s, want %s (error %v)", got, code, err)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not say %q", err, msg)
	}
}

func TestVolumeSize(t *testing.T) {
	cases := []struct {
		name     string
		r        *csi.CapacityRange
		def      int64
		want     int64
		code     codes.Code
		contains string
	}{
		{name: "no range: the default", def: 1 << 30, want: 1 << 30},
		{name: "empty range: the default", r: &csi.CapacityRange{}, def: 64 * mib, want: 64 * mib},
		{name: "default rounded up", def: 64*mib + 1, want: 65 * mib},
		{name: "whole MiB kept", r: &csi.CapacityRange{RequiredBytes: 32 * mib}, want: 32 * mib},
		{name: "rounded up to MiB", r: &csi.CapacityRange{RequiredBytes: 32*mib + 1}, want: 33 * mib},
		{name: "at least the minimum", r: &csi.CapacityRange{RequiredBytes: 1}, want: minSize},
		{name: "exact range", r: &csi.CapacityRange{RequiredBytes: 32 * mib, LimitBytes: 32 * mib}, want: 32 * mib},
		{name: "limit only, below the default", r: &csi.CapacityRange{LimitBytes: 40*mib + 5}, def: 1 << 30, want: 40 * mib},
		{name: "rounding would pass the limit", r: &csi.CapacityRange{RequiredBytes: 32*mib + 1, LimitBytes: 32*mib + 100},
			code: codes.OutOfRange, contains: "whole MiB"},
		{name: "limit below the minimum", r: &csi.CapacityRange{LimitBytes: 4 * mib}, def: 1 << 30,
			code: codes.OutOfRange, contains: "from 16777216 bytes"},
		{name: "limit below required", r: &csi.CapacityRange{RequiredBytes: 64 * mib, LimitBytes: 32 * mib},
			code: codes.InvalidArgument, contains: "above limit_bytes"},
		{name: "negative", r: &csi.CapacityRange{RequiredBytes: -1}, code: codes.InvalidArgument, contains: "negative"},
		{name: "too large", r: &csi.CapacityRange{RequiredBytes: 1 << 62}, code: codes.OutOfRange, contains: "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := volumeSize(tc.r, tc.def)
			wantCode(t, err, tc.code, tc.contains)
			if got != tc.want {
				t.Fatalf("size %d, want %d", got, tc.want)
			}
		})
	}
}

func TestExpandSize(t *testing.T) {
	cases := []struct {
		name    string
		r       *csi.CapacityRange
		current int64
		want    int64
		code    codes.Code
	}{
		{name: "grow", r: &csi.CapacityRange{RequiredBytes: 64 * mib}, current: 32 * mib, want: 64 * mib},
		{name: "grow, rounded up", r: &csi.CapacityRange{RequiredBytes: 64*mib + 1}, current: 32 * mib, want: 65 * mib},
		{name: "already large enough", r: &csi.CapacityRange{RequiredBytes: 16 * mib}, current: 32 * mib, want: 32 * mib},
		{name: "never shrinks past a limit", r: &csi.CapacityRange{RequiredBytes: 16 * mib, LimitBytes: 16 * mib}, current: 32 * mib, code: codes.OutOfRange},
		{name: "no range", current: 32 * mib, code: codes.InvalidArgument},
		{name: "empty range", r: &csi.CapacityRange{}, current: 32 * mib, code: codes.InvalidArgument},
		{name: "limit below required", r: &csi.CapacityRange{RequiredBytes: 64 * mib, LimitBytes: 48 * mib}, current: 32 * mib, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expandSize(tc.r, tc.current)
			wantCode(t, err, tc.code, "")
			if got != tc.want {
				t.Fatalf("size %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPage(t *testing.T) {
	a, b, c, d := nameID(volumePrefix, "a"), nameID(volumePrefix, "b"), nameID(volumePrefix, "c"), nameID(volumePrefix, "d")
	ids := []string{a, b, c, d}
	slices.Sort(ids)
	gone := nameID(volumePrefix, "deleted since") // a token whose entry went away
	cases := []struct {
		name      string
		ids       []string
		token     string
		max       int32
		want      []string
		wantToken string
		code      codes.Code
	}{
		{name: "all", ids: ids, want: ids},
		{name: "none", want: nil},
		{name: "first page", ids: ids, max: 2, want: ids[:2], wantToken: ids[1]},
		{name: "next page", ids: ids, token: ids[1], max: 2, want: ids[2:]},
		{name: "rest after a token", ids: ids, token: ids[0], want: ids[1:]},
		{name: "max past the end", ids: ids, max: 10, want: ids},
		{name: "max exactly the rest: no next token", ids: ids, token: ids[1], max: 2, want: ids[2:]},
		{name: "token of a deleted entry", ids: ids, token: gone, want: after(ids, gone)},
		{name: "last token", ids: ids, token: ids[3], want: []string{}},
		{name: "invalid token", ids: ids, token: "invalid-token", code: codes.Aborted},
		{name: "token of another kind", ids: ids, token: nameID(snapshotPrefix, "a"), code: codes.Aborted},
		{name: "negative max", ids: ids, max: -1, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := page(tc.ids, tc.token, tc.max, volumePrefix)
			wantCode(t, err, tc.code, "")
			if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) || next != tc.wantToken {
				t.Fatalf("page %v next %q, want %v next %q", got, next, tc.want, tc.wantToken)
			}
		})
	}
}

// after is the sorted ids greater than token.
func after(ids []string, token string) []string {
	var out []string
	for _, id := range ids {
		if id > token {
			out = append(out, id)
		}
	}
	return out
}

// TestPageWalk lists every page, as a CO follows next tokens.
func TestPageWalk(t *testing.T) {
	var ids []string
	for i := range 7 {
		ids = append(ids, nameID(snapshotPrefix, string(rune('a'+i))))
	}
	slices.Sort(ids)
	var got []string
	token := ""
	for range len(ids) {
		p, next, err := page(ids, token, 3, snapshotPrefix)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p...)
		if token = next; token == "" {
			break
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("walked %v, want %v", got, ids)
	}
}

func mountCap(fs string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}}}
}

var rwo = mountCap("", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func TestCheckCapability(t *testing.T) {
	block := &csi.VolumeCapability{AccessMode: rwo.AccessMode,
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	cases := []struct {
		name string
		c    *csi.VolumeCapability
		want string // substring of the problem; "" for none
	}{
		{name: "RWO mount", c: rwo},
		{name: "RWO ext4", c: mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)},
		{name: "xfs", c: mountCap("xfs", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), want: `fs_type "xfs"`},
		{name: "RWX", c: mountCap("", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), want: "one node at a time"},
		{name: "ROX", c: mountCap("", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), want: "SINGLE_NODE_WRITER"},
		{name: "block", c: block, want: "block access"},
		{name: "no access type", c: &csi.VolumeCapability{AccessMode: rwo.AccessMode}, want: "want a mount"},
		{name: "no access mode", c: &csi.VolumeCapability{AccessType: rwo.AccessType}, want: "access mode UNKNOWN"},
		{name: "missing", want: "missing"},
		{name: "every problem", c: mountCap("btrfs", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), want: "ext4; access mode MULTI_NODE_MULTI_WRITER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkCapability(tc.c)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("problem %q, want one with %q", got, tc.want)
			}
		})
	}
}

func TestCreateParams(t *testing.T) {
	snap := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap-1"}}}
	clone := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "vol-1"}}}
	caps := []*csi.VolumeCapability{rwo}
	cases := []struct {
		name     string
		req      *csi.CreateVolumeRequest
		want     create
		code     codes.Code
		contains string
	}{
		{name: "plain", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps}, want: create{name: "pvc-1"}},
		{name: "from a snapshot", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps, VolumeContentSource: snap},
			want: create{name: "pvc-1", sourceSnapshot: "snap-1"}},
		{name: "a clone", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps, VolumeContentSource: clone},
			want: create{name: "pvc-1", sourceVolume: "vol-1"}},
		{name: "no name", req: &csi.CreateVolumeRequest{VolumeCapabilities: caps}, code: codes.InvalidArgument, contains: "name"},
		{name: "no capabilities", req: &csi.CreateVolumeRequest{Name: "pvc-1"}, code: codes.InvalidArgument, contains: "volume_capabilities is empty"},
		{name: "RWX", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{rwo,
			mountCap("", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}, code: codes.InvalidArgument, contains: "volume_capabilities[1]"},
		{name: "bad range", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps, CapacityRange: &csi.CapacityRange{RequiredBytes: -5}},
			code: codes.InvalidArgument, contains: "negative"},
		{name: "empty snapshot id", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps, VolumeContentSource: &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{}}}}, code: codes.InvalidArgument, contains: "snapshot_id"},
		{name: "empty source", req: &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: caps, VolumeContentSource: &csi.VolumeContentSource{}},
			code: codes.InvalidArgument, contains: "neither"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := createParams(tc.req)
			wantCode(t, err, tc.code, tc.contains)
			got.r = nil
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCompatible(t *testing.T) {
	v := &volume{Name: "pvc-1", Size: 32 * mib, SourceSnapshot: "snap-1"}
	cases := []struct {
		name string
		c    create
		code codes.Code
	}{
		{name: "same", c: create{name: "pvc-1", sourceSnapshot: "snap-1", r: &csi.CapacityRange{RequiredBytes: 32 * mib}}},
		{name: "smaller asked: still fits", c: create{name: "pvc-1", sourceSnapshot: "snap-1", r: &csi.CapacityRange{RequiredBytes: 20 * mib}}},
		{name: "no size", c: create{name: "pvc-1", sourceSnapshot: "snap-1"}},
		{name: "larger asked", c: create{name: "pvc-1", sourceSnapshot: "snap-1", r: &csi.CapacityRange{RequiredBytes: 64 * mib}}, code: codes.AlreadyExists},
		{name: "limit below it", c: create{name: "pvc-1", sourceSnapshot: "snap-1", r: &csi.CapacityRange{LimitBytes: 16 * mib}}, code: codes.AlreadyExists},
		{name: "another source", c: create{name: "pvc-1", sourceVolume: "vol-2"}, code: codes.AlreadyExists},
		{name: "no source", c: create{name: "pvc-1"}, code: codes.AlreadyExists},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, compatible(v, tc.c), tc.code, "")
		})
	}
}

func TestStageParams(t *testing.T) {
	cases := []struct {
		name string
		req  *csi.NodeStageVolumeRequest
		want stage
		code codes.Code
	}{
		{name: "ok", req: &csi.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage/x/", VolumeCapability: rwo},
			want: stage{volumeID: "vol-1", path: "/stage/x"}},
		{name: "no volume", req: &csi.NodeStageVolumeRequest{StagingTargetPath: "/stage", VolumeCapability: rwo}, code: codes.InvalidArgument},
		{name: "no path", req: &csi.NodeStageVolumeRequest{VolumeId: "vol-1", VolumeCapability: rwo}, code: codes.InvalidArgument},
		{name: "relative path", req: &csi.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "stage", VolumeCapability: rwo}, code: codes.InvalidArgument},
		{name: "no capability", req: &csi.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage"}, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stageParams(tc.req)
			wantCode(t, err, tc.code, "")
			if got.volumeID != tc.want.volumeID || got.path != tc.want.path {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPublishParams(t *testing.T) {
	cases := []struct {
		name string
		req  *csi.NodePublishVolumeRequest
		want publish
		code codes.Code
	}{
		{name: "ok", req: &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage", TargetPath: "/pods/x//mount", VolumeCapability: rwo, Readonly: true},
			want: publish{volumeID: "vol-1", staging: "/stage", target: "/pods/x/mount", readOnly: true}},
		{name: "no volume", req: &csi.NodePublishVolumeRequest{StagingTargetPath: "/stage", TargetPath: "/t", VolumeCapability: rwo}, code: codes.InvalidArgument},
		{name: "no target", req: &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage", VolumeCapability: rwo}, code: codes.InvalidArgument},
		{name: "no capability", req: &csi.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: "/stage", TargetPath: "/t"}, code: codes.InvalidArgument},
		{name: "not staged", req: &csi.NodePublishVolumeRequest{VolumeId: "vol-1", TargetPath: "/t", VolumeCapability: rwo}, code: codes.FailedPrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := publishParams(tc.req)
			wantCode(t, err, tc.code, "")
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNameID(t *testing.T) {
	a := nameID(volumePrefix, "pvc-1")
	if a != nameID(volumePrefix, "pvc-1") || a == nameID(volumePrefix, "pvc-2") {
		t.Fatalf("IDs are not a function of the name: %s", a)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{a, true},
		{nameID(snapshotPrefix, "pvc-1"), false},
		{"vol-0123456789abcdef", true},
		{"vol-0123456789abcdeg", false},
		{"vol-0123", false},
		{"fake-vol-id", false},
		{"", false},
	} {
		if got := validID(volumePrefix, tc.id); got != tc.want {
			t.Errorf("validID(%q) = %t, want %t", tc.id, got, tc.want)
		}
	}
}
