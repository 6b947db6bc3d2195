package csidriver

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// DefaultMountOptions are what every ShareWarden mount starts from; a class's mountOptions
// override them key by key:
//   - vers=4.2, with a retry at 4.1 when the client or server lacks 4.2 (MountVersions): sessions
//     give exactly-once semantics for retried requests, which is what makes a retry across a
//     failover safe; the server serves 4.1 and 4.2 only.
//   - hard: a client keeps retrying through a failover instead of returning EIO to the
//     application (a soft mount turns a 15 s failover into failed writes).
//   - timeo=150,retrans=3: retry every 15 s, so a client reconnects soon after the replacement
//     server is up, without giving up (hard).
//   - noresvport: reconnect from a new source port after a failover instead of waiting for the
//     old connection's state to clear.
func DefaultMountOptions() []string {
	return []string{"vers=4.2", "hard", "timeo=150", "retrans=3", "noresvport"}
}

// fallbackVersion is tried when a mount at the default 4.2 is refused.
const fallbackVersion = "4.1"

// option is one rule: what a value may be, and which key it shares a slot with (hard and
// soft, say, are one choice).
type option struct {
	slot  string
	value func(v string) error // nil: the option takes no value
}

func intIn(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		return nil
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(vals, v) {
			return fmt.Errorf("want one of %s", strings.Join(vals, ", "))
		}
		return nil
	}
}

func blockSize(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 4096 || n > 1048576 || n%4096 != 0 {
		return fmt.Errorf("want a multiple of 4096 from 4096 to 1048576")
	}
	return nil
}

func anyValue(v string) error {
	if v == "" {
		return fmt.Errorf("want a value")
	}
	return nil
}

func ipAddress(v string) error {
	if _, err := netip.ParseAddr(v); err != nil {
		return fmt.Errorf("want an IP address")
	}
	return nil
}

// rules lists every option a ShareWarden mount accepts. Anything else is refused: a typo would
// otherwise surface as a pod stuck in ContainerCreating with the kernel's terse error.
var rules = map[string]option{
	"vers":    {slot: "vers", value: oneOf("4.1", "4.2")},
	"nfsvers": {slot: "vers", value: oneOf("4.1", "4.2")},
	"hard":    {slot: "hard"},
	"soft":    {slot: "hard"},
	"softerr": {slot: "hard"},
	"timeo":   {slot: "timeo", value: intIn(1, 6000)},
	"retrans": {slot: "retrans", value: intIn(0, 10)},
	// nconnect spreads a mount over several TCP connections (Linux 5.3+).
	"nconnect":     {slot: "nconnect", value: intIn(1, 16)},
	"max_connect":  {slot: "max_connect", value: intIn(1, 16)},
	"rsize":        {slot: "rsize", value: blockSize},
	"wsize":        {slot: "wsize", value: blockSize},
	"actimeo":      {slot: "actimeo", value: intIn(0, 3600)},
	"acregmin":     {slot: "acregmin", value: intIn(0, 3600)},
	"acregmax":     {slot: "acregmax", value: intIn(0, 3600)},
	"acdirmin":     {slot: "acdirmin", value: intIn(0, 3600)},
	"acdirmax":     {slot: "acdirmax", value: intIn(0, 3600)},
	"ac":           {slot: "ac"},
	"noac":         {slot: "ac"},
	"lookupcache":  {slot: "lookupcache", value: oneOf("all", "none", "pos", "positive")},
	"local_lock":   {slot: "local_lock", value: oneOf("none", "all", "flock", "posix")},
	"noresvport":   {slot: "resvport"},
	"resvport":     {slot: "resvport"},
	"sharecache":   {slot: "sharecache"},
	"nosharecache": {slot: "sharecache"},
	"cto":          {slot: "cto"},
	"nocto":        {slot: "cto"},
	"ro":           {slot: "ro"},
	"rw":           {slot: "ro"},
	"sync":         {slot: "sync"},
	"async":        {slot: "sync"},
	"noatime":      {slot: "atime"},
	"relatime":     {slot: "atime"},
	"atime":        {slot: "atime"},
	"nodiratime":   {slot: "diratime"},
	"nosuid":       {slot: "suid"},
	"nodev":        {slot: "dev"},
	"noexec":       {slot: "exec"},
	"proto":        {slot: "proto", value: oneOf("tcp", "tcp6")},
	"tcp":          {slot: "proto"},
	"port":         {slot: "port", value: oneOf("2049")},
	"sec":          {slot: "sec", value: oneOf("sys")},
	"clientaddr":   {slot: "clientaddr", value: ipAddress},
	// SELinux labels: kubelet adds context= when the CSIDriver has seLinuxMount.
	"context":     {slot: "context", value: anyValue},
	"fscontext":   {slot: "fscontext", value: anyValue},
	"defcontext":  {slot: "defcontext", value: anyValue},
	"rootcontext": {slot: "rootcontext", value: anyValue},
}

// why says, for options users often try, why they are refused.
var why = map[string]string{
	"udp":    "NFSv4.1 runs over TCP only",
	"rdma":   "the server serves TCP only",
	"intr":   "ignored by every Linux kernel since 2.6.25; a hard mount can be interrupted by SIGKILL anyway",
	"nolock": "NFSv4 locks are part of the protocol; use local_lock=all to keep locks on the client",
	"bg":     "kubelet mounts in the foreground; a background mount would leave the pod without its volume",
}

// MergeMountOptions merges the class's (or PV's) mount options over DefaultMountOptions and
// checks every one: unknown options, bad values and two choices for one slot within the same
// list are refused, with what to write instead. readOnly adds ro. The result is sorted, so the
// same input always gives the same mount.
func MergeMountOptions(user []string, readOnly bool) ([]string, error) {
	type chosen struct{ key, value string }
	slots := map[string]chosen{}
	var errs []string
	parse := func(opt string) (string, string, option, error) {
		key, value, hasValue := strings.Cut(strings.TrimSpace(opt), "=")
		r, ok := rules[key]
		switch {
		case key == "":
			return "", "", option{}, fmt.Errorf("empty mount option")
		case !ok && why[key] != "":
			return "", "", option{}, fmt.Errorf("mount option %q is not supported: %s", opt, why[key])
		case !ok:
			return "", "", option{}, fmt.Errorf("unknown mount option %q; supported: %s", opt, strings.Join(supported(), ", "))
		case r.value == nil && hasValue:
			return "", "", option{}, fmt.Errorf("mount option %q takes no value; write %q", opt, key)
		case r.value != nil && !hasValue:
			return "", "", option{}, fmt.Errorf("mount option %q needs a value (%s=...)", opt, key)
		case r.value != nil:
			if err := r.value(value); err != nil {
				return "", "", option{}, fmt.Errorf("mount option %q: %v", opt, err)
			}
		}
		return key, value, r, nil
	}
	for _, opt := range DefaultMountOptions() {
		key, value, r, _ := parse(opt)
		slots[r.slot] = chosen{key, value}
	}
	seen := map[string]string{}
	for _, list := range user {
		// kubelet passes a PV's mountOptions one per entry; an entry may still hold a,b,c.
		for _, opt := range splitOptions(list) {
			key, value, r, err := parse(opt)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if prev, dup := seen[r.slot]; dup && prev != strings.TrimSpace(opt) {
				errs = append(errs, fmt.Sprintf("mount options %q and %q contradict each other; keep one", prev, strings.TrimSpace(opt)))
				continue
			}
			seen[r.slot] = strings.TrimSpace(opt)
			if key == "nfsvers" {
				key = "vers"
			}
			slots[r.slot] = chosen{key, value}
		}
	}
	if readOnly {
		if prev := seen["ro"]; prev == "rw" {
			errs = append(errs, `mount option "rw" contradicts a read-only volume; remove it`)
		}
		slots["ro"] = chosen{key: "ro"}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid mount options: %s", strings.Join(errs, "; "))
	}
	out := make([]string, 0, len(slots))
	for _, c := range slots {
		if c.value == "" {
			out = append(out, c.key)
		} else {
			out = append(out, c.key+"="+c.value)
		}
	}
	sort.Strings(out)
	return out, nil
}

func supported() []string {
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// withVersion returns opts with vers set to v.
func withVersion(opts []string, v string) []string {
	out := make([]string, 0, len(opts))
	for _, o := range opts {
		if strings.HasPrefix(o, "vers=") {
			o = "vers=" + v
		}
		out = append(out, o)
	}
	return out
}

// explicitVersion tells whether the user chose a version (then there is no fallback).
func explicitVersion(user []string) bool {
	for _, list := range user {
		for _, opt := range splitOptions(list) {
			k, _, _ := strings.Cut(strings.TrimSpace(opt), "=")
			if k == "vers" || k == "nfsvers" {
				return true
			}
		}
	}
	return false
}

// splitOptions splits a comma-separated option list, but not inside double quotes: an SELinux
// context's MCS categories (context="...:s0:c1,c2") hold commas.
func splitOptions(list string) []string {
	var out []string
	quoted, start := false, 0
	for i, r := range list {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ',' && !quoted:
			out = append(out, list[start:i])
			start = i + 1
		}
	}
	return append(out, list[start:])
}
