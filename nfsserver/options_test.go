package nfsserver

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func validOptions() Options {
	o := DefaultOptions()
	o.VolumeID = "0f8a7c1e-1111-2222-3333-444455556666"
	return o
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
		// want are substrings of the error; none means valid.
		want []string
	}{
		{name: "defaults with a volume ID", mutate: func(*Options) {}},
		{name: "NFSv4.0 to 4.2, IPv6, root pseudo path", mutate: func(o *Options) {
			o.MinorVersions = []int{0, 1, 2}
			o.NFSAddress = "[::1]:2049"
			o.PseudoPath = "/"
		}},
		{name: "grace equal to lease", mutate: func(o *Options) { o.Lease, o.Grace = 30*time.Second, 30*time.Second }},
		{name: "no volume ID", mutate: func(o *Options) { o.VolumeID = "" }, want: []string{"volume-id: Invalid value"}},
		{name: "volume ID with a quote", mutate: func(o *Options) { o.VolumeID = `a"b` }, want: []string{"volume-id"}},
		{name: "volume ID too long", mutate: func(o *Options) { o.VolumeID = strings.Repeat("a", 64) }, want: []string{"volume-id"}},
		{name: "claim named", mutate: func(o *Options) { o.ClaimNamespace, o.ClaimName = "team-a", "pg-data.v2" }},
		{name: "claim namespace not a label", mutate: func(o *Options) { o.ClaimNamespace, o.ClaimName = "Team_A", "data" },
			want: []string{"claim-namespace: Invalid value"}},
		{name: "claim name with a quote", mutate: func(o *Options) { o.ClaimNamespace, o.ClaimName = "team-a", `da"ta` },
			want: []string{"claim-name: Invalid value"}},
		{name: "claim name without namespace", mutate: func(o *Options) { o.ClaimName = "data" },
			want: []string{"--claim-namespace and --claim-name are given together"}},
		{name: "relative volume dir", mutate: func(o *Options) { o.VolumeDir = "export" }, want: []string{"volume-dir", "absolute"}},
		{name: "unclean volume dir", mutate: func(o *Options) { o.VolumeDir = "/export/" }, want: []string{"volume-dir", "clean"}},
		{name: "quote in pseudo path", mutate: func(o *Options) { o.PseudoPath = `/ex"port` }, want: []string{"pseudo-path", "quotes"}},
		{name: "newline in runtime dir", mutate: func(o *Options) { o.RuntimeDir = "/run/\nx" }, want: []string{"runtime-dir", "control"}},
		{name: "runtime dir on the volume", mutate: func(o *Options) { o.RuntimeDir = "/export/run" }, want: []string{"runtime-dir", "backing volume"}},
		{name: "runtime dir beside the volume", mutate: func(o *Options) { o.RuntimeDir = "/export-run" }},
		{name: "negative anonymous uid", mutate: func(o *Options) { o.AnonymousUID = -2 }, want: []string{"anonymous-uid", "between 0 and 4294967294"}},
		{name: "anonymous gid (gid_t)-1", mutate: func(o *Options) { o.AnonymousGID = 1<<32 - 1 }, want: []string{"anonymous-gid"}},
		{name: "unknown squash", mutate: func(o *Options) { o.Squash = "root" }, want: []string{"squash", "Unsupported value"}},
		{name: "NFS address is a name", mutate: func(o *Options) { o.NFSAddress = "localhost:2049" }, want: []string{"nfs-address", "not an IP"}},
		{name: "NFS address without port", mutate: func(o *Options) { o.NFSAddress = "0.0.0.0" }, want: []string{"nfs-address"}},
		{name: "NFS port 0", mutate: func(o *Options) { o.NFSAddress = "0.0.0.0:0" }, want: []string{"nfs-address", "1..65535"}},
		{name: "no minor versions", mutate: func(o *Options) { o.MinorVersions = nil }, want: []string{"nfs-minor-versions: Required"}},
		{name: "minor version 3", mutate: func(o *Options) { o.MinorVersions = []int{1, 3} }, want: []string{"nfs-minor-versions"}},
		{name: "duplicate minor version", mutate: func(o *Options) { o.MinorVersions = []int{1, 1} }, want: []string{"distinct"}},
		{name: "fractional lease", mutate: func(o *Options) { o.Lease = 1500 * time.Millisecond }, want: []string{"lease", "whole seconds"}},
		{name: "lease over 120s", mutate: func(o *Options) { o.Lease, o.Grace = 121*time.Second, 180*time.Second }, want: []string{"lease", "between 1s and 2m0s"}},
		{name: "grace shorter than lease", mutate: func(o *Options) { o.Lease, o.Grace = 20*time.Second, 15*time.Second }, want: []string{"grace", "between 20s and 3m0s"}},
		{name: "bad HTTP address", mutate: func(o *Options) { o.HTTPAddress = "8081" }, want: []string{"http-address"}},
		{name: "zero timeouts", mutate: func(o *Options) { o.ProbeTimeout, o.ProbeInterval, o.StopTimeout = 0, 0, 0 },
			want: []string{"probe-timeout", "probe-interval", "stop-timeout"}},
		{name: "no ganesha binary", mutate: func(o *Options) { o.GaneshaBinary = "" }, want: []string{"ganesha-binary: Required"}},
		{name: "relative ganesha log", mutate: func(o *Options) { o.GaneshaLog = "ganesha.log" }, want: []string{"ganesha-log", "absolute"}},
		{name: "ganesha log to syslog", mutate: func(o *Options) { o.GaneshaLog = "SYSLOG" }},
		{name: "unknown log level", mutate: func(o *Options) { o.GaneshaLogLevel = "DEBUG" }, want: []string{"ganesha-log-level"}},
		{name: "all problems at once, on one line", mutate: func(o *Options) { o.VolumeID, o.Squash = "", "x" },
			want: []string{"volume-id", "squash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			tt.mutate(&o)
			err := o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate() = %q, want it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestAddFlags(t *testing.T) {
	o := DefaultOptions()
	fs := pflag.NewFlagSet("nfs-server", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--volume-id=v1", "--volume-dir=/vol", "--pseudo-path=/", "--squash=root_squash",
		"--nfs-address=127.0.0.2:20490", "--nfs-minor-versions=0,1", "--lease=20s", "--grace=40s",
		"--http-address=127.0.0.1:9000", "--runtime-dir=/tmp/rt", "--ganesha-binary=/opt/ganesha.nfsd",
		"--ganesha-log=/tmp/g.log", "--ganesha-log-level=NIV_DEBUG", "--stop-timeout=3s",
		"--probe-timeout=1s", "--probe-interval=2s", "--anonymous-uid=1000", "--anonymous-gid=1001", "--client-allowlist",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		VolumeID: "v1", VolumeDir: "/vol", PseudoPath: "/", Squash: SquashRoot,
		NFSAddress: "127.0.0.2:20490", MinorVersions: []int{0, 1}, Lease: 20 * time.Second, Grace: 40 * time.Second,
		HTTPAddress: "127.0.0.1:9000", RuntimeDir: "/tmp/rt", GaneshaBinary: "/opt/ganesha.nfsd",
		GaneshaLog: "/tmp/g.log", GaneshaLogLevel: "NIV_DEBUG", StopTimeout: 3 * time.Second,
		ProbeTimeout: time.Second, ProbeInterval: 2 * time.Second,
		AnonymousUID: 1000, AnonymousGID: 1001, ClientAllowlist: true,
	}
	if got := o; !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed options:\n got %+v\nwant %+v", got, want)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("parsed options do not validate: %v", err)
	}
}

func TestDefaultsNeedOnlyAVolumeID(t *testing.T) {
	if err := DefaultOptions().Validate(); err == nil || !strings.Contains(err.Error(), "volume-id") {
		t.Fatalf("DefaultOptions().Validate() = %v, want only volume-id to be missing", err)
	}
	if err := validOptions().Validate(); err != nil {
		t.Fatalf("defaults plus a volume ID: %v", err)
	}
}
