package nfsserver

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// FilesystemID derives the export's pinned Filesystem_id (major.minor) from the volume ID, so
// every server ever started for a volume reports the same fsid to clients, on any node. Both
// halves keep below 2^63: ganesha's parser rejects 2^64-1 and some tools print fsids signed.
func FilesystemID(volumeID string) (major, minor uint64) {
	sum := sha256.Sum256([]byte("sharewarden/fsid/" + volumeID))
	const low63 = 1<<63 - 1
	return binary.BigEndian.Uint64(sum[:8]) & low63, binary.BigEndian.Uint64(sum[8:16]) & low63
}

// ServerOwner is the NFSv4.1 server owner and scope of the volume's servers. Ganesha's default is
// the hostname, which is the pod name and changes on every failover; a client that sees another
// server scope must not reclaim (RFC 8881, EXCHANGE_ID), so it would lose its opens and locks.
// One owner per volume also keeps clients from trunking two volumes' servers together.
func ServerOwner(volumeID string) string { return "sharewarden-" + volumeID }

// RenderConfig renders ganesha.conf for opts, which must be valid: Validate keeps quotes, backslashes
// and control characters out of every string written here between double quotes.
//
// What keeps clients working when the volume moves to another node:
//   - Filesystem_id is pinned, so the fsid attribute clients see never changes.
//   - fsid_device = false: ganesha's file handles embed the backing filesystem's identity from its
//     UUID (blkid) or statfs, not the device number, which differs from node to node.
//   - Server_Owner and Server_Scope are pinned per volume (see ServerOwner).
//   - RecoveryBackend fs with RecoveryRoot on the backing volume and Clustered = false (so the
//     records are not filed under a per-node id): the new server knows which clients may reclaim.
//
// NFSv4 over TCP only: no NFSv3, MOUNT, NLM, RQUOTA or UDP listeners, nothing to register with
// rpcbind, a single port for the Service to carry.
//
// Who may mount: with opts.ClientAllowlist the export's own Access_Type is None and a CLIENT
// block admits exactly clients (read-write); with none, nobody. ganesha checks the client's
// address against the export on every compound (PUTFH, LOOKUP into the export), so a client
// dropped from the list is refused at its next request, even on a session it already has.
// Without the allowlist every client that reaches the port is admitted, and clients is ignored.
func RenderConfig(opts Options, clients []netip.Addr) string {
	ip, port, _ := splitIPPort(opts.NFSAddress)
	major, minor := FilesystemID(opts.VolumeID)
	minors := make([]string, len(opts.MinorVersions))
	for i, v := range opts.MinorVersions {
		minors[i] = strconv.Itoa(v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Rendered by sharewarden nfs-server for volume %[1]s; do not edit.

NFS_CORE_PARAM {
	Protocols = 4;
	Bind_addr = %[2]s;
	NFS_Port = %[3]d;
	Enable_UDP = false;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Clustered = false;
	fsid_device = false;
}

NFS_KRB5 {
	Active_krb5 = false;
	CCacheDir = "%[4]s";
}

NFSv4 {
	Minor_Versions = %[5]s;
	Lease_Lifetime = %[6]d;
	Grace_Period = %[7]d;
	RecoveryBackend = fs;
	RecoveryRoot = "%[8]s";
	Server_Owner = "%[9]s";
	Server_Scope = "%[9]s";
	# Pods' users rarely exist in the server's passwd; numeric owners avoid nobody:nogroup.
	Allow_Numeric_Owners = true;
	Only_Numeric_Owners = true;
}

EXPORT {
	Export_Id = 1;
	Path = "%[10]s";
	Pseudo = "%[11]s";
	Filesystem_id = %[12]d.%[13]d;
	Protocols = 4;
	Transports = TCP;
	Access_Type = %[15]s;
	Squash = %[14]s;
	Anonymous_Uid = %[16]d;
	Anonymous_Gid = %[17]d;
	SecType = sys;
	FSAL {
		Name = VFS;
	}
%[18]s}
`,
		opts.VolumeID, ip, port, opts.CCacheDir(),
		strings.Join(minors, ", "), int(opts.Lease.Seconds()), int(opts.Grace.Seconds()),
		opts.RecoveryRoot(), ServerOwner(opts.VolumeID),
		opts.DataDir(), opts.PseudoPath, major, minor, opts.Squash,
		exportAccess(opts), opts.AnonymousUID, opts.AnonymousGID, clientBlock(opts, clients))
	return b.String()
}

// exportAccess is the export's own Access_Type: every client's without the allowlist, nobody's
// with it (the CLIENT block admits the listed ones).
func exportAccess(opts Options) string {
	if opts.ClientAllowlist {
		return "None"
	}
	return "RW"
}

// clientBlock renders the CLIENT block admitting clients, or nothing. It repeats the export's
// protocol, transport and squash settings so that nothing is left to ganesha's defaults (whose
// Protocols include NFSv3, which NFS_CORE_PARAM does not serve).
func clientBlock(opts Options, clients []netip.Addr) string {
	if !opts.ClientAllowlist || len(clients) == 0 {
		return ""
	}
	list := make([]string, len(clients))
	for i, c := range clients {
		list[i] = c.String()
	}
	return fmt.Sprintf(`	CLIENT {
		Clients = %s;
		Access_Type = RW;
		Protocols = 4;
		Transports = TCP;
		Squash = %s;
		Anonymous_Uid = %d;
		Anonymous_Gid = %d;
	}
`, strings.Join(list, ", "), opts.Squash, opts.AnonymousUID, opts.AnonymousGID)
}

// ParseAllowedClients reads the AnnotationAllowedClients value: comma-separated IP addresses,
// which it returns sorted and without duplicates. Anything else is an error, so that nothing
// but addresses ever reaches ganesha's config.
func ParseAllowedClients(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("allowed client %q is not an IP address", f)
		}
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}
