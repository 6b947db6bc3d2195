// Package nfsserver is the NFS server agent (`sharewarden nfs-server`): one per ShareWarden
// volume, in the pod that mounts the volume's backing ReadWriteOnce claim. It renders
// nfs-ganesha's configuration, starts ganesha as its child, forwards stop signals, reaps it and
// exits when it dies, and serves /healthz (an RPC NULL call to ganesha) and /metrics.
package nfsserver

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Squash modes, as ganesha spells them.
const (
	SquashNone = "no_root_squash"
	SquashRoot = "root_squash"
	SquashAll  = "all_squash"
)

// DefaultAnonymousID is the uid and gid squashed requests run as unless told: nobody and
// nogroup, as the Linux NFS server does (ganesha's own default is -2, 4294967294).
const DefaultAnonymousID = 65534

// Options configure one agent. Defaults are those of DefaultOptions.
type Options struct {
	// VolumeID names the volume (the RWX claim's UID). It pins everything NFS clients must see
	// unchanged when the server moves: the export's Filesystem_id and the NFSv4 server owner
	// and scope.
	VolumeID string
	// ClaimNamespace and ClaimName name the RWX claim the volume serves; they label the agent's
	// metrics (with VolumeID) so that operators see whose volume a series is. Optional.
	ClaimNamespace, ClaimName string
	// VolumeDir is where the backing volume is mounted. It must exist: the agent never creates
	// it, so a missing mount is an error rather than an export of the container's own disk.
	VolumeDir string
	// PseudoPath is the export's place in the NFSv4 pseudo filesystem: the path clients mount.
	PseudoPath string
	// Squash is the export's squash mode: no_root_squash, root_squash or all_squash.
	Squash string
	// AnonymousUID and AnonymousGID are the identity squashed requests run as.
	AnonymousUID, AnonymousGID int64
	// ClientAllowlist admits only the clients the controller lists on the server pod (see
	// WatchAllowedClients); none until the list is read. Off, every client that reaches the
	// port may mount.
	ClientAllowlist bool
	// NFSAddress is the IP:port ganesha listens on (TCP only).
	NFSAddress string
	// MinorVersions are the NFSv4 minor versions served.
	MinorVersions []int
	// Lease is the NFSv4 lease lifetime; Grace the grace period after a start.
	Lease, Grace time.Duration

	// HTTPAddress serves /healthz and /metrics.
	HTTPAddress string
	// ProbeTimeout bounds one RPC NULL call to ganesha; ProbeInterval is how often the agent
	// probes on its own to keep the ganesha_up metric current.
	ProbeTimeout, ProbeInterval time.Duration

	// RuntimeDir holds ganesha's rendered config, its pid file, its credential cache dir and its
	// blkid cache.
	RuntimeDir string
	// GaneshaBinary is ganesha.nfsd, by path or name looked up in PATH.
	GaneshaBinary string
	// GaneshaLog is ganesha's log destination: a file, or STDOUT, STDERR or SYSLOG.
	GaneshaLog string
	// GaneshaLogLevel is ganesha's default log level, e.g. NIV_EVENT.
	GaneshaLogLevel string
	// StopTimeout is how long ganesha may take to stop after SIGTERM before it is killed.
	StopTimeout time.Duration
}

// DefaultOptions returns the defaults the flags show.
//
// Lease and grace are short because this server's whole purpose is fast failover. After a move
// (or a restart) NFSv4 clients may only reclaim their opens and locks during the grace period,
// and nobody may take new opens or locks until it ends, so the grace period adds directly to
// the outage; the failover budget is about 30 s from node death to the client's next acknowledged write,
// of which up to 15 s go to bringing the replacement up. Grace must be at least one lease (RFC 8881,
// "Server Failure and Recovery") so every client notices the restart and reclaims: 10 s lease, 15 s grace.
// With NFSv4.1 clients send RECLAIM_COMPLETE, so ganesha lifts grace early once every known
// client has reclaimed. A 10 s lease costs clients a renewal (a SEQUENCE) every few seconds,
// which is nothing; it also means a vanished client's locks are freed after 10 s instead of 90.
//
// NFSv4.1 and 4.2 only: sessions give exactly-once semantics across reconnects (retransmitted
// non-idempotent requests after a failover are answered from the reply cache instead of being
// run twice), and RECLAIM_COMPLETE ends grace early. Every Linux kernel since 3.x speaks 4.1.
//
// no_root_squash: the export belongs to one claim whose pods could already do anything as root on
// an RWO volume of their own; many images run as root and chown their data directory at start,
// which root_squash turns into EPERM. root_squash would not protect much either, since AUTH_SYS
// lets any client claim any uid; who reaches the server is restricted by the client allowlist
// (ClientAllowlist) and, where the CNI enforces it, a NetworkPolicy (docs/security.md).
func DefaultOptions() Options {
	return Options{
		VolumeDir:       "/export",
		PseudoPath:      "/export",
		Squash:          SquashNone,
		AnonymousUID:    DefaultAnonymousID,
		AnonymousGID:    DefaultAnonymousID,
		NFSAddress:      "0.0.0.0:2049",
		MinorVersions:   []int{1, 2},
		Lease:           10 * time.Second,
		Grace:           15 * time.Second,
		HTTPAddress:     ":8081",
		ProbeTimeout:    2 * time.Second,
		ProbeInterval:   5 * time.Second,
		RuntimeDir:      "/run/sharewarden",
		GaneshaBinary:   "ganesha.nfsd",
		GaneshaLog:      "STDOUT",
		GaneshaLogLevel: "NIV_EVENT",
		StopTimeout:     15 * time.Second,
	}
}

// AddFlags binds the options to fs, with the current values of o as defaults.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.VolumeID, "volume-id", o.VolumeID,
		"ID of the volume (the RWX claim's UID; required); pins the export's Filesystem_id and the NFSv4 server owner so clients keep their file handles and state when the server moves")
	fs.StringVar(&o.ClaimNamespace, "claim-namespace", o.ClaimNamespace, "namespace of the RWX claim this volume serves (the claim_namespace label of the metrics)")
	fs.StringVar(&o.ClaimName, "claim-name", o.ClaimName, "name of the RWX claim this volume serves (the claim_name label of the metrics)")
	fs.StringVar(&o.VolumeDir, "volume-dir", o.VolumeDir,
		"mount point of the backing volume (must exist); clients see its "+DataSubdir+"/ subdirectory, ganesha keeps NFSv4 recovery state in "+StateSubdir+"/")
	fs.StringVar(&o.PseudoPath, "pseudo-path", o.PseudoPath, "NFSv4 pseudo path of the export, the path clients mount")
	fs.StringVar(&o.Squash, "squash", o.Squash, "export squash mode: no_root_squash, root_squash or all_squash")
	fs.Int64Var(&o.AnonymousUID, "anonymous-uid", o.AnonymousUID, "uid that squashed requests run as (root's with root_squash, everyone's with all_squash)")
	fs.Int64Var(&o.AnonymousGID, "anonymous-gid", o.AnonymousGID, "gid that squashed requests run as")
	fs.BoolVar(&o.ClientAllowlist, "client-allowlist", o.ClientAllowlist,
		"admit only the NFS clients listed in the server pod's "+swv1.AnnotationAllowedClients+" annotation, kept current by the controller (none until it is read); needs API access to the pod")
	fs.StringVar(&o.NFSAddress, "nfs-address", o.NFSAddress, "IP:port ganesha listens on for NFS (TCP only)")
	fs.IntSliceVar(&o.MinorVersions, "nfs-minor-versions", o.MinorVersions, "NFSv4 minor versions served (0, 1, 2)")
	fs.DurationVar(&o.Lease, "lease", o.Lease, "NFSv4 lease lifetime (whole seconds, 1s..120s)")
	fs.DurationVar(&o.Grace, "grace", o.Grace, "NFSv4 grace period after a start, for clients to reclaim state (whole seconds, lease..180s)")
	fs.StringVar(&o.HTTPAddress, "http-address", o.HTTPAddress, "address serving /healthz and /metrics")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", o.ProbeTimeout, "timeout of one RPC NULL call to ganesha")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", o.ProbeInterval, "how often the agent probes ganesha for the ganesha_up metric")
	fs.StringVar(&o.RuntimeDir, "runtime-dir", o.RuntimeDir, "writable directory for ganesha's config, pid file and credential cache")
	fs.StringVar(&o.GaneshaBinary, "ganesha-binary", o.GaneshaBinary, "path or name of ganesha.nfsd")
	fs.StringVar(&o.GaneshaLog, "ganesha-log", o.GaneshaLog, "ganesha's log: a file path, STDOUT, STDERR or SYSLOG")
	fs.StringVar(&o.GaneshaLogLevel, "ganesha-log-level", o.GaneshaLogLevel, "ganesha's log level: "+strings.Join(ganeshaLogLevels, ", "))
	fs.DurationVar(&o.StopTimeout, "stop-timeout", o.StopTimeout, "how long ganesha may take to stop after SIGTERM before it is killed")
}

// Layout of the backing volume.
const (
	// DataSubdir is the exported tree. Exporting a subdirectory keeps the agent's own state and
	// the filesystem's lost+found out of clients' sight: applications that insist on an empty
	// data directory (initdb, mysqld) work, and clients cannot break reclaim by deleting state.
	DataSubdir = "data"
	// StateSubdir holds what must move with the volume; ganesha's NFSv4 recovery records live
	// in its ganesha-recovery/ directory.
	StateSubdir = ".sharewarden"
)

// DataDir is the exported directory.
func (o Options) DataDir() string { return filepath.Join(o.VolumeDir, DataSubdir) }

// RecoveryRoot is ganesha's RecoveryRoot, on the backing volume so it moves with the data.
func (o Options) RecoveryRoot() string {
	return filepath.Join(o.VolumeDir, StateSubdir, "ganesha-recovery")
}

// ConfigPath, PIDPath and CCacheDir are ganesha's files in the runtime dir.
func (o Options) ConfigPath() string { return filepath.Join(o.RuntimeDir, "ganesha.conf") }

// PIDPath is ganesha's pid file.
func (o Options) PIDPath() string { return filepath.Join(o.RuntimeDir, "ganesha.pid") }

// BlkidCachePath is ganesha's own blkid cache (BLKID_FILE), emptied before every start.
func (o Options) BlkidCachePath() string { return filepath.Join(o.RuntimeDir, "blkid.tab") }

// CCacheDir is ganesha's Kerberos credential cache dir (unused, but ganesha wants one).
func (o Options) CCacheDir() string { return filepath.Join(o.RuntimeDir, "ganesha-ccache") }

// maxAnonymousID is the largest uid or gid: 2^32-1 is (uid_t)-1, which means "no id".
const maxAnonymousID = 1<<32 - 2

var (
	ganeshaLogLevels = []string{"NIV_NULL", "NIV_FATAL", "NIV_MAJ", "NIV_CRIT", "NIV_WARN", "NIV_EVENT",
		"NIV_INFO", "NIV_DEBUG", "NIV_MID_DEBUG", "NIV_FULL_DEBUG"}
	squashModes = []string{SquashNone, SquashRoot, SquashAll}
	// volumeIDPattern admits Kubernetes UIDs and names; it must stay safe inside a quoted
	// ganesha config string.
	volumeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// Validate reports every problem with o, one line.
func (o Options) Validate() error {
	var errs field.ErrorList
	flag := field.NewPath

	if !volumeIDPattern.MatchString(o.VolumeID) {
		errs = append(errs, field.Invalid(flag("volume-id"), o.VolumeID,
			"must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. the claim's UID)"))
	}
	if o.ClaimNamespace != "" {
		for _, msg := range validation.IsDNS1123Label(o.ClaimNamespace) {
			errs = append(errs, field.Invalid(flag("claim-namespace"), o.ClaimNamespace, msg))
		}
	}
	if o.ClaimName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.ClaimName) {
			errs = append(errs, field.Invalid(flag("claim-name"), o.ClaimName, msg))
		}
	}
	if (o.ClaimNamespace == "") != (o.ClaimName == "") {
		errs = append(errs, field.Required(flag("claim-namespace"), "--claim-namespace and --claim-name are given together or not at all"))
	}
	errs = append(errs, validatePath(flag("volume-dir"), o.VolumeDir)...)
	errs = append(errs, validatePath(flag("runtime-dir"), o.RuntimeDir)...)
	if o.VolumeDir != "" && o.RuntimeDir != "" && isWithin(o.RuntimeDir, o.VolumeDir) {
		errs = append(errs, field.Invalid(flag("runtime-dir"), o.RuntimeDir, "must not be on the backing volume"))
	}
	errs = append(errs, validatePath(flag("pseudo-path"), o.PseudoPath)...)
	if !slices.Contains(squashModes, o.Squash) {
		errs = append(errs, field.NotSupported(flag("squash"), o.Squash, squashModes))
	}
	for _, id := range []struct {
		flag string
		v    int64
	}{{"anonymous-uid", o.AnonymousUID}, {"anonymous-gid", o.AnonymousGID}} {
		if id.v < 0 || id.v > maxAnonymousID {
			errs = append(errs, field.Invalid(flag(id.flag), id.v, fmt.Sprintf("must be between 0 and %d", maxAnonymousID)))
		}
	}
	if _, _, err := splitIPPort(o.NFSAddress); err != nil {
		errs = append(errs, field.Invalid(flag("nfs-address"), o.NFSAddress, err.Error()))
	}
	if len(o.MinorVersions) == 0 {
		errs = append(errs, field.Required(flag("nfs-minor-versions"), "serve at least one of 0, 1, 2"))
	}
	for i, v := range o.MinorVersions {
		if v < 0 || v > 2 || slices.Contains(o.MinorVersions[:i], v) {
			errs = append(errs, field.Invalid(flag("nfs-minor-versions"), o.MinorVersions, "must be distinct values of 0, 1, 2"))
			break
		}
	}
	errs = append(errs, validateSeconds(flag("lease"), o.Lease, time.Second, 120*time.Second)...)
	errs = append(errs, validateSeconds(flag("grace"), o.Grace, max(o.Lease, time.Second), 180*time.Second)...)
	if _, _, err := net.SplitHostPort(o.HTTPAddress); err != nil {
		errs = append(errs, field.Invalid(flag("http-address"), o.HTTPAddress, err.Error()))
	}
	if o.ProbeTimeout <= 0 {
		errs = append(errs, field.Invalid(flag("probe-timeout"), o.ProbeTimeout.String(), "must be positive"))
	}
	if o.ProbeInterval <= 0 {
		errs = append(errs, field.Invalid(flag("probe-interval"), o.ProbeInterval.String(), "must be positive"))
	}
	if o.StopTimeout <= 0 {
		errs = append(errs, field.Invalid(flag("stop-timeout"), o.StopTimeout.String(), "must be positive"))
	}
	if o.GaneshaBinary == "" {
		errs = append(errs, field.Required(flag("ganesha-binary"), ""))
	}
	switch o.GaneshaLog {
	case "STDOUT", "STDERR", "SYSLOG":
	default:
		errs = append(errs, validatePath(flag("ganesha-log"), o.GaneshaLog)...)
	}
	if !slices.Contains(ganeshaLogLevels, o.GaneshaLogLevel) {
		errs = append(errs, field.NotSupported(flag("ganesha-log-level"), o.GaneshaLogLevel, ganeshaLogLevels))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid options: %w", errs.ToAggregate())
}

// validatePath admits absolute, clean paths that can be written inside a quoted ganesha string.
func validatePath(p *field.Path, v string) field.ErrorList {
	switch {
	case v == "":
		return field.ErrorList{field.Required(p, "")}
	case !filepath.IsAbs(v):
		return field.ErrorList{field.Invalid(p, v, "must be an absolute path")}
	case filepath.Clean(v) != v:
		return field.ErrorList{field.Invalid(p, v, "must be a clean path (no trailing '/', '.', '..' or '//')")}
	case strings.ContainsFunc(v, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 || r == 0x7f }):
		return field.ErrorList{field.Invalid(p, v, "must not contain quotes, backslashes or control characters")}
	}
	return nil
}

func validateSeconds(p *field.Path, d, lo, hi time.Duration) field.ErrorList {
	switch {
	case d%time.Second != 0:
		return field.ErrorList{field.Invalid(p, d.String(), "must be whole seconds")}
	case d < lo || d > hi:
		return field.ErrorList{field.Invalid(p, d.String(), fmt.Sprintf("must be between %s and %s", lo, hi))}
	}
	return nil
}

// isWithin says whether path is dir or below it.
func isWithin(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// splitIPPort splits an IP:port; ganesha binds an IP literal, never a name.
func splitIPPort(addr string) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("host %q is not an IP address", host)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, 0, fmt.Errorf("port %q is not in 1..65535", portStr)
	}
	return ip, port, nil
}
