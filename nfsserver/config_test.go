package nfsserver

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// settings returns the "key = value" lines of block in a rendered config, keyed by key.
func settings(t *testing.T, conf, block string) map[string]string {
	t.Helper()
	start := strings.Index(conf, "\n"+block+" {\n")
	if start < 0 {
		t.Fatalf("no %s block in:\n%s", block, conf)
	}
	out := map[string]string{}
	depth := 0
	for _, line := range strings.Split(conf[start+1:], "\n")[1:] {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasSuffix(line, "{"):
			depth++
		case line == "}" && depth == 0:
			return out
		case line == "}":
			depth--
		case strings.HasPrefix(line, "#") || line == "":
		default:
			k, v, ok := strings.Cut(strings.TrimSuffix(line, ";"), " = ")
			if !ok || !strings.HasSuffix(line, ";") {
				t.Fatalf("malformed line %q in block %s", line, block)
			}
			out[k] = v
		}
	}
	t.Fatalf("block %s is not closed", block)
	return nil
}

func TestRenderConfig(t *testing.T) {
	const id = "0f8a7c1e-1111-2222-3333-444455556666"
	major, minor := FilesystemID(id)
	fsid := fmt.Sprintf("%d.%d", major, minor)
	tests := []struct {
		name   string
		mutate func(*Options)
		// want maps block -> key -> value; every listed setting must be rendered exactly so.
		want map[string]map[string]string
	}{
		{
			name:   "defaults",
			mutate: func(*Options) {},
			want: map[string]map[string]string{
				"NFS_CORE_PARAM": {
					"Protocols": "4", "Bind_addr": "0.0.0.0", "NFS_Port": "2049",
					"Enable_UDP": "false", "Enable_NLM": "false", "Enable_RQUOTA": "false",
					"Clustered": "false", "fsid_device": "false",
				},
				"NFSv4": {
					"Minor_Versions": "1, 2", "Lease_Lifetime": "10", "Grace_Period": "15",
					"RecoveryBackend": "fs",
					"RecoveryRoot":    `"/export/.sharewarden/ganesha-recovery"`,
					"Server_Owner":    `"sharewarden-` + id + `"`,
					"Server_Scope":    `"sharewarden-` + id + `"`,
				},
				"EXPORT": {
					"Export_Id": "1", "Path": `"/export/data"`, "Pseudo": `"/export"`,
					"Filesystem_id": fsid, "Protocols": "4", "Transports": "TCP",
					"Access_Type": "RW", "Squash": "no_root_squash", "SecType": "sys", "Name": "VFS",
					"Anonymous_Uid": "65534", "Anonymous_Gid": "65534",
				},
				"NFS_KRB5": {"Active_krb5": "false", "CCacheDir": `"/run/sharewarden/ganesha-ccache"`},
			},
		},
		{
			name: "test instance on a loopback address",
			mutate: func(o *Options) {
				o.NFSAddress = "127.0.0.2:20490"
				o.VolumeDir = "/tmp/vol"
				o.RuntimeDir = "/tmp/run"
				o.MinorVersions = []int{0, 1, 2}
			},
			want: map[string]map[string]string{
				"NFS_CORE_PARAM": {"Bind_addr": "127.0.0.2", "NFS_Port": "20490"},
				"NFSv4":          {"Minor_Versions": "0, 1, 2", "RecoveryRoot": `"/tmp/vol/.sharewarden/ganesha-recovery"`},
				"EXPORT":         {"Path": `"/tmp/vol/data"`},
				"NFS_KRB5":       {"CCacheDir": `"/tmp/run/ganesha-ccache"`},
			},
		},
		{
			name: "IPv6 wildcard, root squash, root pseudo path, long lease",
			mutate: func(o *Options) {
				o.NFSAddress = "[::]:2049"
				o.Squash = SquashRoot
				o.PseudoPath = "/"
				o.Lease, o.Grace = 90*time.Second, 120*time.Second
				o.MinorVersions = []int{2}
			},
			want: map[string]map[string]string{
				"NFS_CORE_PARAM": {"Bind_addr": "::"},
				"NFSv4":          {"Lease_Lifetime": "90", "Grace_Period": "120", "Minor_Versions": "2"},
				"EXPORT":         {"Squash": "root_squash", "Pseudo": `"/"`},
			},
		},
		{
			name:   "all squash to a chosen identity",
			mutate: func(o *Options) { o.Squash, o.AnonymousUID, o.AnonymousGID = SquashAll, 1000, 2000 },
			want:   map[string]map[string]string{"EXPORT": {"Squash": "all_squash", "Anonymous_Uid": "1000", "Anonymous_Gid": "2000"}},
		},
		{
			name:   "allowlist on: the export itself admits nobody",
			mutate: func(o *Options) { o.ClientAllowlist = true },
			want:   map[string]map[string]string{"EXPORT": {"Access_Type": "None"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			o.VolumeID = id
			tt.mutate(&o)
			if err := o.Validate(); err != nil {
				t.Fatalf("test options invalid: %v", err)
			}
			conf := RenderConfig(o, nil)
			if strings.Count(conf, "{") != strings.Count(conf, "}") {
				t.Fatalf("unbalanced braces:\n%s", conf)
			}
			for block, kv := range tt.want {
				got := settings(t, conf, block)
				for k, v := range kv {
					if got[k] != v {
						t.Errorf("%s.%s = %q, want %q", block, k, got[k], v)
					}
				}
			}
		})
	}
}

// clientBlocks returns the CLIENT blocks of a rendered config, each as its settings.
func clientBlocks(conf string) []map[string]string {
	var out []map[string]string
	for _, part := range strings.Split(conf, "\tCLIENT {\n")[1:] {
		body, _, _ := strings.Cut(part, "}")
		kv := map[string]string{}
		for _, line := range strings.Split(body, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSuffix(strings.TrimSpace(line), ";"), " = "); ok {
				kv[k] = v
			}
		}
		out = append(out, kv)
	}
	return out
}

func TestRenderConfigClients(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name      string
		allowlist bool
		squash    string
		clients   []netip.Addr
		// wantAccess is the EXPORT's own Access_Type; wantClients the CLIENT block's list ("" for
		// no block).
		wantAccess, wantClients string
	}{
		{name: "allowlist off: everyone, the list ignored", clients: addrs("10.0.0.1"), wantAccess: "RW"},
		{name: "allowlist on, no consumers yet: nobody", allowlist: true, wantAccess: "None"},
		{name: "one node", allowlist: true, clients: addrs("10.0.0.1"), wantAccess: "None", wantClients: "10.0.0.1"},
		{name: "dual-stack nodes", allowlist: true, squash: SquashRoot, clients: addrs("10.0.0.1", "10.0.0.7", "fd00::1"),
			wantAccess: "None", wantClients: "10.0.0.1, 10.0.0.7, fd00::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			o.ClientAllowlist = tt.allowlist
			if tt.squash != "" {
				o.Squash = tt.squash
			}
			conf := RenderConfig(o, tt.clients)
			// The export's own settings: the config without its CLIENT block (settings flattens).
			own := conf
			if i := strings.Index(conf, "\tCLIENT {\n"); i >= 0 {
				j := strings.Index(conf[i:], "\t}\n")
				own = conf[:i] + conf[i+j+3:]
			}
			if got := settings(t, own, "EXPORT")["Access_Type"]; got != tt.wantAccess {
				t.Errorf("EXPORT Access_Type = %q, want %q", got, tt.wantAccess)
			}
			blocks := clientBlocks(conf)
			if tt.wantClients == "" {
				if len(blocks) != 0 {
					t.Fatalf("CLIENT blocks %v, want none:\n%s", blocks, conf)
				}
				return
			}
			if len(blocks) != 1 {
				t.Fatalf("%d CLIENT blocks, want 1:\n%s", len(blocks), conf)
			}
			want := map[string]string{"Clients": tt.wantClients, "Access_Type": "RW", "Protocols": "4", "Transports": "TCP",
				"Squash": o.Squash, "Anonymous_Uid": "65534", "Anonymous_Gid": "65534"}
			for k, v := range want {
				if blocks[0][k] != v {
					t.Errorf("CLIENT %s = %q, want %q", k, blocks[0][k], v)
				}
			}
		})
	}
}

func TestParseAllowedClients(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "", want: ""},
		{in: " , ", want: ""},
		{in: "10.0.0.2,10.0.0.1", want: "10.0.0.1,10.0.0.2"},
		{in: "10.0.0.1, 10.0.0.1 ,fd00::1", want: "10.0.0.1,fd00::1"},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1"},
		{in: "10.0.0.0/24", wantErr: true},
		{in: "node-a", wantErr: true},
		{in: "10.0.0.1;Access_Type = RW", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseAllowedClients(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseAllowedClients(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if !tt.wantErr && strings.Join(s, ",") != tt.want {
			t.Errorf("ParseAllowedClients(%q) = %v, want %s", tt.in, s, tt.want)
		}
	}
}

func TestFilesystemID(t *testing.T) {
	a1, a2 := FilesystemID("volume-a")
	b1, b2 := FilesystemID("volume-a")
	if a1 != b1 || a2 != b2 {
		t.Fatalf("FilesystemID is not deterministic: %d.%d then %d.%d", a1, a2, b1, b2)
	}
	c1, c2 := FilesystemID("volume-b")
	if a1 == c1 && a2 == c2 {
		t.Fatalf("two volumes share Filesystem_id %d.%d", a1, a2)
	}
	// Pinned: clients of an existing volume must see the same fsid after any upgrade of the agent.
	if got, want := fmt.Sprintf("%d.%d", a1, a2), pinnedFSIDOfVolumeA; got != want {
		t.Fatalf("FilesystemID(volume-a) = %s, want %s; changing it breaks every mounted client", got, want)
	}
}

// pinnedFSIDOfVolumeA is FilesystemID("volume-a") as first released.
const pinnedFSIDOfVolumeA = "7876251553557288906.6914522052223280587"
