package nfsserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Sources the volume collector reads, the values of the collect errors' source label.
const (
	sourceStatfs  = "statfs"
	sourceProcIO  = "proc_io"
	sourceProcTCP = "proc_net_tcp"
)

// volumeCollector reads the export's filesystem, ganesha's I/O accounting and the pod's TCP
// connections when Prometheus scrapes: a statfs and three small /proc reads, nothing kept in
// between. What cannot be read is left out of that scrape and counted in errors.
type volumeCollector struct {
	dataDir string
	nfsPort uint16
	// procRoot is /proc; tests point it elsewhere.
	procRoot string
	// pid is ganesha's pid while it runs, else 0.
	pid func() int64

	capacity, used, avail, inodes, inodesUsed, inodesFree *prometheus.Desc
	readChars, writtenChars, readSyscalls, writeSyscalls  *prometheus.Desc
	readBytes, writtenBytes                               *prometheus.Desc
	clients, connections                                  *prometheus.Desc
	errors                                                *prometheus.CounterVec
}

func newVolumeCollector(dataDir string, nfsPort uint16, pid func() int64) *volumeCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("sharewarden_nfsserver_"+name, help, nil, nil)
	}
	c := &volumeCollector{
		dataDir: dataDir, nfsPort: nfsPort, procRoot: "/proc", pid: pid,
		capacity:      desc("export_capacity_bytes", "Size of the export's filesystem (statfs f_blocks)."),
		used:          desc("export_used_bytes", "Bytes in use on the export's filesystem (f_blocks - f_bfree)."),
		avail:         desc("export_available_bytes", "Bytes still available to clients on the export's filesystem (f_bavail; the filesystem's reserve for root excluded)."),
		inodes:        desc("export_inodes", "Inodes of the export's filesystem (f_files; 0 where the filesystem has no fixed number)."),
		inodesUsed:    desc("export_inodes_used", "Inodes in use on the export's filesystem (f_files - f_ffree)."),
		inodesFree:    desc("export_inodes_free", "Inodes still free on the export's filesystem (f_ffree)."),
		readChars:     desc("ganesha_read_bytes_total", "Bytes ganesha read with read-like syscalls, from files and sockets (rchar of /proc/<pid>/io): NFS requests and WRITE payloads received, and file data read."),
		writtenChars:  desc("ganesha_written_bytes_total", "Bytes ganesha wrote with write-like syscalls, to files and sockets (wchar): NFS replies and READ payloads sent, and file data written."),
		readSyscalls:  desc("ganesha_read_syscalls_total", "Read-like syscalls made by ganesha (syscr)."),
		writeSyscalls: desc("ganesha_write_syscalls_total", "Write-like syscalls made by ganesha (syscw)."),
		readBytes:     desc("ganesha_storage_read_bytes_total", "Bytes ganesha had read from the backing volume, page-cache hits excluded (read_bytes)."),
		writtenBytes:  desc("ganesha_storage_written_bytes_total", "Bytes ganesha dirtied for writing to the backing volume (write_bytes)."),
		clients:       desc("clients", "Distinct remote addresses with an established TCP connection to the NFS port: the nodes that have the volume mounted."),
		connections:   desc("connections", "Established TCP connections to the NFS port."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharewarden_nfsserver_collect_errors_total",
			Help: "Scrapes that could not read a source, by source (statfs, proc_io, proc_net_tcp); its metrics are missing from that scrape.",
		}, []string{"source"}),
	}
	for _, s := range []string{sourceStatfs, sourceProcIO, sourceProcTCP} {
		c.errors.WithLabelValues(s)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.capacity, c.used, c.avail, c.inodes, c.inodesUsed, c.inodesFree,
		c.readChars, c.writtenChars, c.readSyscalls, c.writeSyscalls, c.readBytes, c.writtenBytes,
		c.clients, c.connections} {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if fs, err := statExport(c.dataDir); err != nil {
		c.errors.WithLabelValues(sourceStatfs).Inc()
	} else {
		gauge(c.capacity, float64(fs.capacity))
		gauge(c.used, float64(fs.used))
		gauge(c.avail, float64(fs.avail))
		gauge(c.inodes, float64(fs.inodes))
		gauge(c.inodesUsed, float64(fs.inodes-fs.inodesFree))
		gauge(c.inodesFree, float64(fs.inodesFree))
	}
	if pid := c.pid(); pid > 0 {
		io, err := c.readProcIO(pid)
		if err != nil {
			c.errors.WithLabelValues(sourceProcIO).Inc()
		} else {
			counter(c.readChars, io.ReadChars)
			counter(c.writtenChars, io.WrittenChars)
			counter(c.readSyscalls, io.ReadSyscalls)
			counter(c.writeSyscalls, io.WriteSyscalls)
			counter(c.readBytes, io.ReadBytes)
			counter(c.writtenBytes, io.WrittenBytes)
		}
	}
	if clients, conns, err := c.countClients(); err != nil {
		c.errors.WithLabelValues(sourceProcTCP).Inc()
	} else {
		gauge(c.clients, float64(clients))
		gauge(c.connections, float64(conns))
	}
	c.errors.Collect(ch)
}

// exportFS is what statfs says of the export's filesystem, in bytes and inodes.
type exportFS struct {
	capacity, used, avail uint64
	inodes, inodesFree    uint64
}

func statExport(dir string) (exportFS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return exportFS{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return exportFS{
		capacity:   st.Blocks * bs,
		used:       (st.Blocks - min(st.Bfree, st.Blocks)) * bs,
		avail:      st.Bavail * bs,
		inodes:     st.Files,
		inodesFree: min(st.Ffree, st.Files),
	}, nil
}

// readProcIO reads ganesha's I/O accounting. Once ganesha has switched a thread to a client's
// uid it is no longer dumpable, and the kernel then lets only a holder of CAP_SYS_PTRACE read
// the file (ptrace access mode READ): the server pod keeps that capability for this.
func (c *volumeCollector) readProcIO(pid int64) (ProcIO, error) {
	data, err := os.ReadFile(filepath.Join(c.procRoot, strconv.FormatInt(pid, 10), "io"))
	if err != nil {
		return ProcIO{}, err
	}
	return ParseProcIO(data)
}

// countClients reads both TCP tables of the pod's network namespace; either may be missing (a
// kernel without IPv6), not both.
func (c *volumeCollector) countClients() (clients, conns int, err error) {
	var socks []TCPSocket
	read := 0
	for _, name := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join(c.procRoot, "net", name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		s, err := ParseProcNetTCP(data)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/net/%s: %w", name, err)
		}
		socks = append(socks, s...)
		read++
	}
	if read == 0 {
		return 0, 0, fmt.Errorf("neither %s/net/tcp nor tcp6 exists", c.procRoot)
	}
	clients, conns = Clients(socks, c.nfsPort)
	return clients, conns, nil
}
