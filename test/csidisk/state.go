package csidisk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// state is everything the driver knows, kept in one small JSON file (stateFile) in Config.Dir
// beside the images, so that a restarted driver and every node service sharing the directory
// see the same volumes, attachments and mounts.
type state struct {
	Volumes   map[string]*volume   `json:"volumes,omitempty"`   // by volume ID
	Snapshots map[string]*snapshot `json:"snapshots,omitempty"` // by snapshot ID
	// Nodes are the nodes a node service was started for: only these can be published to.
	Nodes map[string]nodeInfo `json:"nodes,omitempty"`
}

type nodeInfo struct {
	MaxVolumes int64 `json:"maxVolumes,omitempty"`
}

// volume is a disk: an ext4 image file, where it is attached, staged and published.
type volume struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	// SourceSnapshot or SourceVolume is the content source the volume was created from.
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	SourceVolume   string `json:"sourceVolume,omitempty"`

	// AttachedTo is the node the volume is ControllerPublished to ("" when detached), and
	// AttachedReadOnly whether that attachment is read-only.
	AttachedTo       string `json:"attachedTo,omitempty"`
	AttachedReadOnly bool   `json:"attachedReadOnly,omitempty"`

	// Staged is where a node mounted the image (nil when not staged); Targets are its bind
	// mounts on that node.
	Staged  *staging `json:"staged,omitempty"`
	Targets []target `json:"targets,omitempty"`
	// LastDevice is the loop device the volume had when last staged: the next staging gets
	// another one, as a cloud disk gets another device number on the node it moves to.
	LastDevice string `json:"lastDevice,omitempty"`
}

type staging struct {
	Node     string `json:"node"`
	Path     string `json:"path"`
	Device   string `json:"device"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

type target struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

type snapshot struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Source  string    `json:"source"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

const (
	stateFile = "state.json"
	lockFile  = "state.lock"
)

// store reads and writes the state file under an exclusive flock on lockFile: flock excludes
// every other holder, in this process (each call opens its own file description) or another,
// so one lock covers a controller and node services sharing a directory.
type store struct{ dir string }

func newStore(dir string) (store, error) {
	if dir == "" {
		return store{}, errors.New("csidisk: Config.Dir is empty")
	}
	for _, d := range []string{dir, filepath.Join(dir, volumesDir), filepath.Join(dir, snapshotsDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return store{}, fmt.Errorf("state directory: %w", err)
		}
	}
	return store{dir: dir}, nil
}

// update runs f on the current state with the lock held and, when f returns nil, saves what
// f left. Side effects f performs (images, mounts) happen under the same lock, so no two
// operations interleave; they are short for the small images tests use.
func (s store) update(f func(*state) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.read()
	if err != nil {
		return err
	}
	if err := f(st); err != nil {
		return err
	}
	return s.write(st)
}

// view runs f on the current state with the lock held; changes f makes are not saved.
func (s store) view(f func(*state) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.read()
	if err != nil {
		return err
	}
	return f(st)
}

func (s store) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("state lock: %w", err)
	}
	return func() { _ = f.Close() }, nil // closing the last descriptor releases the flock
}

func (s store) read() (*state, error) {
	st := &state{}
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte("{}"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decoding state %s: %w", filepath.Join(s.dir, stateFile), err)
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*volume{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*snapshot{}
	}
	if st.Nodes == nil {
		st.Nodes = map[string]nodeInfo{}
	}
	return st, nil
}

// write replaces the state file atomically: a synced temporary file renamed over it.
func (s store) write(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	return writeAtomic(filepath.Join(s.dir, stateFile), b)
}

func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func (s store) volumeImage(id string) string {
	return filepath.Join(s.dir, volumesDir, id+".img")
}

func (s store) snapshotImage(id string) string {
	return filepath.Join(s.dir, snapshotsDir, id+".img")
}

const (
	volumesDir   = "volumes"
	snapshotsDir = "snapshots"
)

// attachedCount is how many volumes are ControllerPublished to node.
func (st *state) attachedCount(node string) int64 {
	var n int64
	for _, v := range st.Volumes {
		if v.AttachedTo == node {
			n++
		}
	}
	return n
}
