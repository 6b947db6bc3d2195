package csidisk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sizes. Capacities are whole MiB, as a cloud rounds a disk up to its allocation unit.
const (
	sizeUnit = 1 << 20
	// minSize is the smallest disk: an ext4 filesystem with a journal needs a few MiB.
	minSize = 16 << 20
	// maxSize bounds a disk (the images are sparse, so this is only a sanity bound).
	maxSize = 1 << 40
	// defaultSize is a disk's size when the request names none and Config.DefaultSize is 0.
	defaultSize = 1 << 30
)

// fsType is the only filesystem the disks carry.
const fsType = "ext4"

// Kinds of ID, and of pagination token (the last ID of the page before).
const (
	volumePrefix   = "vol-"
	snapshotPrefix = "snap-"
)

// nameID derives an ID from a CO-given name: requests are idempotent by name, so the same name
// always lands on the same ID, also after a crash between writing the image and the state.
func nameID(prefix, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:8])
}

// validID tells whether id has the shape nameID gives IDs of that kind.
func validID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

func roundUp(n int64) int64 { return (n + sizeUnit - 1) / sizeUnit * sizeUnit }

// checkRange rejects a capacity range no volume can satisfy.
func checkRange(r *csi.CapacityRange) error {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0 || lim < 0:
		return status.Errorf(codes.InvalidArgument, "capacity_range %d..%d: sizes cannot be negative", req, lim)
	case lim > 0 && req > lim:
		return status.Errorf(codes.InvalidArgument, "capacity_range: required_bytes %d is above limit_bytes %d", req, lim)
	}
	return nil
}

// volumeSize is a new volume's size: required_bytes (def when 0) rounded up to whole MiB and
// at least minSize, or the largest whole-MiB size within limit_bytes when that is smaller.
func volumeSize(r *csi.CapacityRange, def int64) (int64, error) {
	if err := checkRange(r); err != nil {
		return 0, err
	}
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	want := req
	if want == 0 {
		want = def
	}
	if want > maxSize {
		return 0, status.Errorf(codes.OutOfRange, "capacity %d bytes: disks are at most %d bytes", want, int64(maxSize))
	}
	return fit(roundUp(max(want, minSize)), req, lim)
}

// fit clamps size to limit_bytes (rounding down to whole MiB) and checks the result still
// meets required_bytes and minSize.
func fit(size, req, lim int64) (int64, error) {
	if lim > 0 && size > lim {
		size = lim / sizeUnit * sizeUnit
	}
	if size < max(req, minSize) {
		return 0, status.Errorf(codes.OutOfRange, "capacity_range %d..%d: disks are whole MiB from %d bytes", req, lim, int64(minSize))
	}
	return size, nil
}

// expandSize is the size a volume of size current grows to for r; a volume already large
// enough keeps its size (a disk never shrinks).
func expandSize(r *csi.CapacityRange, current int64) (int64, error) {
	if r == nil || (r.GetRequiredBytes() == 0 && r.GetLimitBytes() == 0) {
		return 0, status.Error(codes.InvalidArgument, "capacity_range is required")
	}
	if err := checkRange(r); err != nil {
		return 0, err
	}
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req <= current {
		if lim > 0 && current > lim {
			return 0, status.Errorf(codes.OutOfRange, "the volume is %d bytes, above limit_bytes %d: disks do not shrink", current, lim)
		}
		return current, nil
	}
	if req > maxSize {
		return 0, status.Errorf(codes.OutOfRange, "capacity %d bytes: disks are at most %d bytes", req, int64(maxSize))
	}
	return fit(roundUp(req), req, lim)
}

// checkCapability tells why c is not what a disk serves: a single-node-writer ext4 mount. The
// message is for the CO (ValidateVolumeCapabilities) or an InvalidArgument.
func checkCapability(c *csi.VolumeCapability) string {
	var problems []string
	switch {
	case c == nil:
		return "volume_capability is missing"
	case c.GetBlock() != nil:
		problems = append(problems, "block access is not supported: the disks are ext4 filesystems, use a mount")
	case c.GetMount() == nil:
		problems = append(problems, "no access type: want a mount")
	case c.GetMount().GetFsType() != "" && c.GetMount().GetFsType() != fsType:
		problems = append(problems, fmt.Sprintf("fs_type %q: the disks are %s; leave it empty or say %s", c.GetMount().GetFsType(), fsType, fsType))
	}
	if m := c.GetAccessMode().GetMode(); m != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		problems = append(problems, fmt.Sprintf("access mode %s: a disk is attached to one node at a time, want SINGLE_NODE_WRITER (ReadWriteOnce)", m))
	}
	return strings.Join(problems, "; ")
}

// checkCapabilities is checkCapability over a request's list, which must not be empty.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume_capabilities is empty")
	}
	var problems []string
	for i, c := range caps {
		if p := checkCapability(c); p != "" {
			problems = append(problems, fmt.Sprintf("volume_capabilities[%d]: %s", i, p))
		}
	}
	if len(problems) > 0 {
		return status.Error(codes.InvalidArgument, strings.Join(problems, "; "))
	}
	return nil
}

// create is a checked CreateVolume request.
type create struct {
	name string
	r    *csi.CapacityRange
	// sourceSnapshot or sourceVolume is the content source ("" for an empty disk).
	sourceSnapshot, sourceVolume string
}

func createParams(req *csi.CreateVolumeRequest) (create, error) {
	if req.GetName() == "" {
		return create{}, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return create{}, err
	}
	if err := checkRange(req.GetCapacityRange()); err != nil {
		return create{}, err
	}
	c := create{name: req.GetName(), r: req.GetCapacityRange()}
	if src := req.GetVolumeContentSource(); src != nil {
		switch {
		case src.GetSnapshot() != nil:
			if c.sourceSnapshot = src.GetSnapshot().GetSnapshotId(); c.sourceSnapshot == "" {
				return create{}, status.Error(codes.InvalidArgument, "volume_content_source.snapshot.snapshot_id is empty")
			}
		case src.GetVolume() != nil:
			if c.sourceVolume = src.GetVolume().GetVolumeId(); c.sourceVolume == "" {
				return create{}, status.Error(codes.InvalidArgument, "volume_content_source.volume.volume_id is empty")
			}
		default:
			return create{}, status.Error(codes.InvalidArgument, "volume_content_source has neither a snapshot nor a volume")
		}
	}
	return c, nil
}

// compatible tells whether an existing volume answers c again (CreateVolume is idempotent by
// name), or why not: AlreadyExists, as the spec asks for a name reused with other parameters.
func compatible(v *volume, c create) error {
	req, lim := c.r.GetRequiredBytes(), c.r.GetLimitBytes()
	if v.Size < req || (lim > 0 && v.Size > lim) {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with %d bytes, outside the requested %d..%d", c.name, v.Size, req, lim)
	}
	if v.SourceSnapshot != c.sourceSnapshot || v.SourceVolume != c.sourceVolume {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with another content source (snapshot %q, volume %q)", c.name, v.SourceSnapshot, v.SourceVolume)
	}
	return nil
}

// page returns the IDs of a sorted list that follow token (the last ID of the page before; ""
// for the first page), at most maxEntries of them (0: all), and the token of the next page (""
// after the last). Unlike an index, such a token stays good when entries come and go between
// pages and never repeats one; a token that is not an ID of the kind is Aborted, as the spec
// says for an invalid starting_token.
func page(ids []string, token string, maxEntries int32, prefix string) ([]string, string, error) {
	if maxEntries < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "max_entries %d is negative", maxEntries)
	}
	if token != "" && !validID(prefix, token) {
		return nil, "", status.Errorf(codes.Aborted, "starting_token %q was not given by this driver", token)
	}
	start, _ := slices.BinarySearch(ids, token)
	if start < len(ids) && token != "" && ids[start] == token {
		start++
	}
	rest := ids[start:]
	if maxEntries == 0 || int(maxEntries) >= len(rest) {
		return rest, "", nil
	}
	p := rest[:maxEntries]
	return p, p[len(p)-1], nil
}

// checkPath rejects an empty or relative path in a request field.
func checkPath(field, p string) error {
	if p == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	if !path.IsAbs(p) {
		return status.Errorf(codes.InvalidArgument, "%s %q: want an absolute path", field, p)
	}
	return nil
}

// stage is a checked NodeStageVolume request.
type stage struct {
	volumeID, path string
	mountFlags     []string
}

func stageParams(req *csi.NodeStageVolumeRequest) (stage, error) {
	if req.GetVolumeId() == "" {
		return stage{}, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if err := checkPath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return stage{}, err
	}
	if p := checkCapability(req.GetVolumeCapability()); p != "" {
		return stage{}, status.Error(codes.InvalidArgument, p)
	}
	return stage{volumeID: req.GetVolumeId(), path: cleanPath(req.GetStagingTargetPath()),
		mountFlags: req.GetVolumeCapability().GetMount().GetMountFlags()}, nil
}

// publish is a checked NodePublishVolume request.
type publish struct {
	volumeID, staging, target string
	readOnly                  bool
}

func publishParams(req *csi.NodePublishVolumeRequest) (publish, error) {
	if req.GetVolumeId() == "" {
		return publish{}, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if err := checkPath("target_path", req.GetTargetPath()); err != nil {
		return publish{}, err
	}
	if p := checkCapability(req.GetVolumeCapability()); p != "" {
		return publish{}, status.Error(codes.InvalidArgument, p)
	}
	if req.GetStagingTargetPath() == "" {
		return publish{}, status.Error(codes.FailedPrecondition, "staging_target_path is empty: the volume must be staged (NodeStageVolume) first")
	}
	if err := checkPath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return publish{}, err
	}
	return publish{volumeID: req.GetVolumeId(), staging: cleanPath(req.GetStagingTargetPath()),
		target: cleanPath(req.GetTargetPath()), readOnly: req.GetReadonly()}, nil
}

// cleanPath is the form paths are recorded in.
func cleanPath(p string) string { return path.Clean(p) }
