package nfsserver_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	"github.com/sharewarden/sharewarden/nfsserver"
	"github.com/sharewarden/sharewarden/test/nfs4"
)

// The data path through one real server on loopback (the shipped configuration, a journaled
// ext4 disk on a loop device) beside the same workload on the disk under the export, in the
// same run, so that the ratios hold on a noisy machine:
//
//	go test ./test/e2e/nfsserver -run '^$' -bench BenchmarkDataPath -benchtime 1x -count 3
//
// Each figure is a rate on NFS and locally, and nfs/local; ganesha's CPU is per GiB moved, its
// RSS after the workload.
const (
	benchFileSize  = 128 << 20
	benchChunk     = 1 << 20
	benchFiles     = 400 // per stream, small-file creates
	benchSmallFile = 4096
)

type dataPath struct {
	b      *testing.B
	agent  *agent
	client *nfs4.Client
	export []byte
	local  string // a directory on the same disk, outside the export
}

func BenchmarkDataPath(b *testing.B) {
	disk := newDiskOfSize(b, 1200<<20)
	a := startAgent(b, agentConfig{host: "127.0.0.9", volumeDir: disk.MountPoint})
	a.waitHealthz(http.StatusOK)
	c := dialClient(b, nfs4.Config{Addr: net.JoinHostPort(a.host, strconv.Itoa(a.nfsPort)), Owner: "bench", MinorVersion: 2})
	export, err := c.LookupPath(opCtx(b), "/export")
	if err != nil {
		b.Fatal(err)
	}
	local := filepath.Join(disk.MountPoint, "local-bench")
	if err := os.MkdirAll(local, 0o755); err != nil {
		b.Fatal(err)
	}
	d := &dataPath{b: b, agent: a, client: c, export: export, local: local}
	for _, inflight := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("write/inflight=%d", inflight), func(b *testing.B) { d.sequential(b, inflight, true) })
		b.Run(fmt.Sprintf("coldread/inflight=%d", inflight), func(b *testing.B) { d.sequential(b, inflight, false) })
	}
	for _, streams := range []int{1, 8} {
		b.Run(fmt.Sprintf("create/streams=%d", streams), func(b *testing.B) { d.creates(b, streams) })
		b.Run(fmt.Sprintf("lookup+getattr/streams=%d", streams), func(b *testing.B) { d.lookups(b, streams) })
	}
}

// ganeshaCPU is ganesha's user+system CPU time so far.
func (d *dataPath) ganeshaCPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.agent.ganeshaPID()))
	if err != nil {
		d.b.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// selfCPU is this process's CPU time so far: the test client's share of the work.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (d *dataPath) ganeshaRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.agent.ganeshaPID()))
	if err != nil {
		d.b.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// dropCaches empties the page cache, so reads come from the disk (as root).
func dropCaches(b *testing.B) {
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		b.Skipf("cannot drop the page cache for a cold read: %v", err)
	}
}

// parallel runs n workers over count chunks, each chunk given to one worker.
func parallel(n, count int, do func(i int) error) error {
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range count {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// sequential writes (durably: UNSTABLE writes and one COMMIT, as write + fsync) or cold-reads a
// 128 MiB file in 1 MiB requests, inflight at a time, over NFS and locally.
func (d *dataPath) sequential(b *testing.B, inflight int, write bool) {
	ctx := opCtx(b)
	name := fmt.Sprintf("seq-%d", inflight)
	chunk := bytes.Repeat([]byte{'s'}, benchChunk)
	count := benchFileSize / benchChunk
	var nfsTime, localTime, cpu, clientCPU time.Duration
	for range b.N {
		o, err := d.client.Open(ctx, d.export, name, nfs4.OpenFlags{Create: true, Mode: 0o644})
		if err != nil {
			b.Fatal(err)
		}
		lf, err := os.OpenFile(filepath.Join(d.local, name), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		if !write { // the file to read, written beforehand
			if err := parallel(8, count, func(i int) error {
				_, err := o.Write(ctx, uint64(i*benchChunk), chunk, nfsv4.UNSTABLE4)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			if _, err := o.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			if err := parallel(8, count, func(i int) error { _, err := lf.WriteAt(chunk, int64(i*benchChunk)); return err }); err != nil {
				b.Fatal(err)
			}
			_ = lf.Sync()
			dropCaches(b)
		}
		cpu0, self0 := d.ganeshaCPU(), selfCPU()
		start := time.Now()
		if write {
			err = parallel(inflight, count, func(i int) error {
				_, err := o.Write(ctx, uint64(i*benchChunk), chunk, nfsv4.UNSTABLE4)
				return err
			})
			if err == nil {
				_, err = o.Commit(ctx)
			}
		} else {
			err = parallel(inflight, count, func(i int) error {
				data, _, err := o.Read(ctx, uint64(i*benchChunk), benchChunk)
				if err == nil && len(data) != benchChunk {
					err = fmt.Errorf("short read at chunk %d: %d bytes", i, len(data))
				}
				return err
			})
		}
		if err != nil {
			b.Fatal(err)
		}
		nfsTime += time.Since(start)
		cpu += d.ganeshaCPU() - cpu0
		clientCPU += selfCPU() - self0
		if !write {
			dropCaches(b)
		}
		start = time.Now()
		buf := make([]byte, benchChunk)
		var lerr error
		if write {
			lerr = parallel(inflight, count, func(i int) error { _, err := lf.WriteAt(chunk, int64(i*benchChunk)); return err })
			if lerr == nil {
				lerr = lf.Sync()
			}
		} else {
			var mu sync.Mutex
			lerr = parallel(inflight, count, func(i int) error {
				mu.Lock() // one buffer per worker would do; reads are the measure, not copies
				defer mu.Unlock()
				_, err := lf.ReadAt(buf, int64(i*benchChunk))
				return err
			})
		}
		if lerr != nil {
			b.Fatal(lerr)
		}
		localTime += time.Since(start)
		_ = o.Close(ctx)
		_ = lf.Close()
		// Room for the next workload on the disk.
		if err := d.client.Remove(ctx, d.export, name); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(filepath.Join(d.local, name)); err != nil {
			b.Fatal(err)
		}
	}
	gib := float64(b.N) * benchFileSize / (1 << 30)
	mbps := func(d time.Duration) float64 { return float64(b.N) * benchFileSize / (1 << 20) / d.Seconds() }
	b.ReportMetric(mbps(nfsTime), "nfs-MiB/s")
	b.ReportMetric(mbps(localTime), "local-MiB/s")
	b.ReportMetric(mbps(nfsTime)/mbps(localTime), "nfs/local")
	b.ReportMetric(cpu.Seconds()/gib, "ganesha-core-s/GiB")
	b.ReportMetric(clientCPU.Seconds()/gib, "client-core-s/GiB")
	b.ReportMetric(d.ganeshaRSS(), "ganesha-RSS-MiB")
}

// creates makes small files as the kernel does for `echo > f` on a sync-on-close workload:
// OPEN(create), WRITE FILE_SYNC, CLOSE; locally open, write, fsync, close.
func (d *dataPath) creates(b *testing.B, streams int) {
	ctx := opCtx(b)
	data := bytes.Repeat([]byte{'c'}, benchSmallFile)
	var nfsTime, localTime time.Duration
	for n := range b.N {
		dir := fmt.Sprintf("creates-%d-%d", streams, n)
		if err := os.MkdirAll(filepath.Join(d.agent.volumeDir, nfsserver.DataSubdir, dir), 0o755); err != nil {
			b.Fatal(err)
		}
		fh, err := d.client.Lookup(ctx, d.export, dir)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := parallel(streams, streams*benchFiles, func(i int) error {
			o, err := d.client.Open(ctx, fh, fmt.Sprintf("f%d", i), nfs4.OpenFlags{Create: true, Mode: 0o644})
			if err != nil {
				return err
			}
			if _, err := o.Write(ctx, 0, data, nfsv4.FILE_SYNC4); err != nil {
				return err
			}
			return o.Close(ctx)
		}); err != nil {
			b.Fatal(err)
		}
		nfsTime += time.Since(start)
		ldir := filepath.Join(d.local, dir)
		if err := os.MkdirAll(ldir, 0o755); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if err := parallel(streams, streams*benchFiles, func(i int) error {
			f, err := os.Create(filepath.Join(ldir, fmt.Sprintf("f%d", i)))
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			return f.Close()
		}); err != nil {
			b.Fatal(err)
		}
		localTime += time.Since(start)
	}
	files := float64(b.N * streams * benchFiles)
	b.ReportMetric(files/nfsTime.Seconds(), "nfs-files/s")
	b.ReportMetric(files/localTime.Seconds(), "local-files/s")
	b.ReportMetric(localTime.Seconds()/nfsTime.Seconds(), "nfs/local")
}

// lookups resolves and stats existing files (LOOKUP, then GETATTR, after the page cache was
// dropped), against stat(2) locally.
func (d *dataPath) lookups(b *testing.B, streams int) {
	ctx := opCtx(b)
	dir := fmt.Sprintf("creates-%d-0", streams)
	fh, err := d.client.Lookup(ctx, d.export, dir)
	if err != nil {
		b.Skipf("needs the files of create/streams=%d: %v", streams, err)
	}
	var nfsTime, localTime time.Duration
	for range b.N {
		dropCaches(b)
		start := time.Now()
		if err := parallel(streams, streams*benchFiles, func(i int) error {
			f, err := d.client.Lookup(ctx, fh, fmt.Sprintf("f%d", i))
			if err != nil {
				return err
			}
			_, err = d.client.GetAttr(ctx, f)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		nfsTime += time.Since(start)
		dropCaches(b)
		start = time.Now()
		if err := parallel(streams, streams*benchFiles, func(i int) error {
			_, err := os.Stat(filepath.Join(d.local, dir, fmt.Sprintf("f%d", i)))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		localTime += time.Since(start)
	}
	n := float64(b.N * streams * benchFiles)
	b.ReportMetric(n/nfsTime.Seconds(), "nfs-lookups/s")
	b.ReportMetric(n/localTime.Seconds(), "local-stats/s")
	b.ReportMetric(localTime.Seconds()/nfsTime.Seconds(), "nfs/local")
}
