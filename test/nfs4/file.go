package nfs4

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
)

// result returns results[i] as the result arm T, or an ErrBadReply error.
func result[T nfsv4.NfsResop4](res []nfsv4.NfsResop4, i int) (T, error) {
	var zero T
	if i >= len(res) {
		return zero, fmt.Errorf("%w: no result %d", ErrBadReply, i)
	}
	r, ok := res[i].(T)
	if !ok {
		return zero, fmt.Errorf("%w: result %d is op %d", ErrBadReply, i, res[i].GetResop())
	}
	return r, nil
}

func fhResult(res []nfsv4.NfsResop4, i int) ([]byte, error) {
	r, err := result[*nfsv4.NfsResop4_OP_GETFH](res, i)
	if err != nil {
		return nil, err
	}
	ok, isOK := r.Opgetfh.(*nfsv4.Getfh4res_NFS4_OK)
	if !isOK {
		return nil, fmt.Errorf("%w: GETFH without a handle", ErrBadReply)
	}
	return ok.Resok4.Object, nil
}

func attrResult(res []nfsv4.NfsResop4, i int) (Attr, error) {
	r, err := result[*nfsv4.NfsResop4_OP_GETATTR](res, i)
	if err != nil {
		return Attr{}, err
	}
	ok, isOK := r.Opgetattr.(*nfsv4.Getattr4res_NFS4_OK)
	if !isOK {
		return Attr{}, fmt.Errorf("%w: GETATTR without attributes", ErrBadReply)
	}
	return DecodeAttrs(ok.Resok4.ObjAttributes)
}

func putfh(fh []byte) nfsv4.NfsArgop4 {
	return &nfsv4.NfsArgop4_OP_PUTFH{Opputfh: nfsv4.Putfh4args{Object: fh}}
}

func getattr() nfsv4.NfsArgop4 {
	return &nfsv4.NfsArgop4_OP_GETATTR{Opgetattr: nfsv4.Getattr4args{AttrRequest: AttrRequest()}}
}

// RootFH is the handle of the pseudo filesystem's root.
func (c *Client) RootFH(ctx context.Context) ([]byte, error) {
	res, err := c.Compound(ctx, &nfsv4.NfsArgop4_OP_PUTROOTFH{}, &nfsv4.NfsArgop4_OP_GETFH{})
	if err != nil {
		return nil, fmt.Errorf("PUTROOTFH: %w", err)
	}
	return fhResult(res, 1)
}

// LookupPath returns the handle of an absolute path from the pseudo root, e.g. the export.
func (c *Client) LookupPath(ctx context.Context, p string) ([]byte, error) {
	ops := []nfsv4.NfsArgop4{&nfsv4.NfsArgop4_OP_PUTROOTFH{}}
	for _, name := range strings.Split(strings.Trim(path.Clean(p), "/"), "/") {
		if name != "" {
			ops = append(ops, &nfsv4.NfsArgop4_OP_LOOKUP{Oplookup: nfsv4.Lookup4args{Objname: name}})
		}
	}
	ops = append(ops, &nfsv4.NfsArgop4_OP_GETFH{})
	res, err := c.Compound(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", p, err)
	}
	return fhResult(res, len(ops)-1)
}

// Lookup returns the handle of name in dir.
func (c *Client) Lookup(ctx context.Context, dir []byte, name string) ([]byte, error) {
	res, err := c.Compound(ctx, putfh(dir), &nfsv4.NfsArgop4_OP_LOOKUP{Oplookup: nfsv4.Lookup4args{Objname: name}}, &nfsv4.NfsArgop4_OP_GETFH{})
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	return fhResult(res, 2)
}

// GetAttr returns fh's attributes.
func (c *Client) GetAttr(ctx context.Context, fh []byte) (Attr, error) {
	res, err := c.Compound(ctx, putfh(fh), getattr())
	if err != nil {
		return Attr{}, fmt.Errorf("GETATTR: %w", err)
	}
	return attrResult(res, 1)
}

// Remove removes name from dir.
func (c *Client) Remove(ctx context.Context, dir []byte, name string) error {
	if _, err := c.Compound(ctx, putfh(dir), &nfsv4.NfsArgop4_OP_REMOVE{Opremove: nfsv4.Remove4args{Target: name}}); err != nil {
		return fmt.Errorf("removing %s: %w", name, err)
	}
	return nil
}

// DirEntry is one READDIR entry.
type DirEntry struct {
	Name string
	Attr Attr
}

// ReadDir lists dir, following cookies to the end (at most 100,000 entries).
func (c *Client) ReadDir(ctx context.Context, dir []byte) ([]DirEntry, error) {
	var out []DirEntry
	var cookie uint64
	var verf [8]byte
	for len(out) < 100000 {
		res, err := c.Compound(ctx, putfh(dir), &nfsv4.NfsArgop4_OP_READDIR{Opreaddir: nfsv4.Readdir4args{
			Cookie: cookie, Cookieverf: verf, Dircount: 8192, Maxcount: 32768, AttrRequest: AttrRequest(),
		}})
		if err != nil {
			return nil, fmt.Errorf("READDIR: %w", err)
		}
		r, err := result[*nfsv4.NfsResop4_OP_READDIR](res, 1)
		if err != nil {
			return nil, err
		}
		ok, isOK := r.Opreaddir.(*nfsv4.Readdir4res_NFS4_OK)
		if !isOK {
			return nil, fmt.Errorf("%w: READDIR without entries", ErrBadReply)
		}
		verf = ok.Resok4.Cookieverf
		n := 0
		for e := ok.Resok4.Reply.Entries; e != nil; e = e.Nextentry {
			a, err := DecodeAttrs(e.Attrs)
			if err != nil {
				return nil, fmt.Errorf("READDIR entry %q: %w", e.Name, err)
			}
			out = append(out, DirEntry{Name: e.Name, Attr: a})
			cookie = e.Cookie
			n++
		}
		if ok.Resok4.Reply.Eof {
			return out, nil
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: READDIR returned no entries and no EOF", ErrBadReply)
		}
	}
	return nil, fmt.Errorf("READDIR: more than %d entries", len(out))
}

// DirDelegation is the server's answer to GET_DIR_DELEGATION.
type DirDelegation struct {
	// Granted tells whether a delegation came (GDD4_OK); WillSignal is GDD4_UNAVAIL's flag.
	Granted, WillSignal bool
	StateID             nfsv4.Stateid4
}

// GetDirDelegation asks for a delegation on dir, as Linux 6.19+ clients do on directories, with
// the notification types such a client asks for. An error carries the operation's status.
func (c *Client) GetDirDelegation(ctx context.Context, dir []byte) (DirDelegation, error) {
	res, err := c.Compound(ctx, putfh(dir), &nfsv4.NfsArgop4_OP_GET_DIR_DELEGATION{OpgetDirDelegation: nfsv4.GetDirDelegation4args{
		GddaNotificationTypes: bitmap(int(nfsv4.NOTIFY4_REMOVE_ENTRY), int(nfsv4.NOTIFY4_ADD_ENTRY), int(nfsv4.NOTIFY4_RENAME_ENTRY)),
		GddaChildAttributes:   bitmap(nfsv4.FATTR4_SIZE, nfsv4.FATTR4_CHANGE),
		GddaDirAttributes:     bitmap(nfsv4.FATTR4_CHANGE),
	}})
	if err != nil {
		return DirDelegation{}, fmt.Errorf("GET_DIR_DELEGATION: %w", err)
	}
	r, err := result[*nfsv4.NfsResop4_OP_GET_DIR_DELEGATION](res, 1)
	if err != nil {
		return DirDelegation{}, err
	}
	ok, isOK := r.OpgetDirDelegation.(*nfsv4.GetDirDelegation4res_NFS4_OK)
	if !isOK {
		return DirDelegation{}, fmt.Errorf("%w: GET_DIR_DELEGATION without a result", ErrBadReply)
	}
	switch nf := ok.GddrResNonFatal4.(type) {
	case *nfsv4.GetDirDelegation4resNonFatal_GDD4_OK:
		return DirDelegation{Granted: true, StateID: nf.GddrnfResok4.GddrStateid}, nil
	case *nfsv4.GetDirDelegation4resNonFatal_GDD4_UNAVAIL:
		return DirDelegation{WillSignal: nf.GddrnfWillSignalDelegAvail}, nil
	}
	return DirDelegation{}, fmt.Errorf("%w: GET_DIR_DELEGATION result", ErrBadReply)
}

// OpenFlags say how to open.
type OpenFlags struct {
	// Create creates the file (UNCHECKED4: an existing file is opened) with Mode.
	Create bool
	Mode   uint32
	// ReadOnly opens for reading only; the default is read and write.
	ReadOnly bool
}

// Open is an open file: its handle and open stateid, which the client reclaims after a server
// restart (Config.Recover or Client.Recover), so it stays usable across a failover.
type Open struct {
	c      *Client
	fh     []byte
	access uint32

	mu       sync.Mutex
	stateid  nfsv4.Stateid4
	lost     error
	reclaims int
}

// Open opens (and with flags.Create creates) name in dir.
func (c *Client) Open(ctx context.Context, dir []byte, name string, flags OpenFlags) (*Open, error) {
	access := uint32(nfsv4.OPEN4_SHARE_ACCESS_BOTH)
	if flags.ReadOnly {
		access = nfsv4.OPEN4_SHARE_ACCESS_READ
	}
	var how nfsv4.Openflag4 = &nfsv4.Openflag4_default{}
	if flags.Create {
		how = &nfsv4.Openflag4_OPEN4_CREATE{How: &nfsv4.Createhow4_UNCHECKED4{Createattrs: encodeMode(flags.Mode)}}
	}
	res, err := c.do(ctx, func() []nfsv4.NfsArgop4 {
		return []nfsv4.NfsArgop4{putfh(dir), c.openOp(access, how, &nfsv4.OpenClaim4_CLAIM_NULL{File: name}), &nfsv4.NfsArgop4_OP_GETFH{}}
	})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	sid, err := openResult(res, 1)
	if err != nil {
		return nil, err
	}
	fh, err := fhResult(res, 2)
	if err != nil {
		return nil, err
	}
	o := &Open{c: c, fh: fh, access: access, stateid: sid}
	c.mu.Lock()
	c.opens[o] = struct{}{}
	c.mu.Unlock()
	return o, nil
}

func (c *Client) openOp(access uint32, how nfsv4.Openflag4, claim nfsv4.OpenClaim4) nfsv4.NfsArgop4 {
	c.mu.Lock()
	id := c.clientID
	c.mu.Unlock()
	return &nfsv4.NfsArgop4_OP_OPEN{Opopen: nfsv4.Open4args{
		ShareAccess: access | nfsv4.OPEN4_SHARE_ACCESS_WANT_NO_DELEG,
		ShareDeny:   nfsv4.OPEN4_SHARE_DENY_NONE,
		Owner:       nfsv4.StateOwner4{Clientid: id, Owner: c.owner},
		Openhow:     how,
		Claim:       claim,
	}}
}

func openResult(res []nfsv4.NfsResop4, i int) (nfsv4.Stateid4, error) {
	r, err := result[*nfsv4.NfsResop4_OP_OPEN](res, i)
	if err != nil {
		return nfsv4.Stateid4{}, err
	}
	ok, isOK := r.Opopen.(*nfsv4.Open4res_NFS4_OK)
	if !isOK {
		return nfsv4.Stateid4{}, fmt.Errorf("%w: OPEN without a stateid", ErrBadReply)
	}
	return ok.Resok4.Stateid, nil
}

// reclaim reopens o with CLAIM_PREVIOUS on the current session.
func (o *Open) reclaim(ctx context.Context) error {
	c := o.c
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return errNoSession
	}
	res, err := c.onSlot(ctx, s, []nfsv4.NfsArgop4{putfh(o.fh),
		c.openOp(o.access, &nfsv4.Openflag4_default{}, &nfsv4.OpenClaim4_CLAIM_PREVIOUS{DelegateType: nfsv4.OPEN_DELEGATE_NONE})})
	if err != nil {
		return fmt.Errorf("reclaiming an open: %w", err)
	}
	sid, err := openResult(res, 1)
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.stateid, o.lost = sid, nil
	o.reclaims++
	o.mu.Unlock()
	return nil
}

func (o *Open) lose(err error) {
	o.mu.Lock()
	o.lost = fmt.Errorf("%w: %w", ErrOpenLost, err)
	o.mu.Unlock()
}

// FH is the file's handle.
func (o *Open) FH() []byte { return o.fh }

// StateID is the current open stateid.
func (o *Open) StateID() nfsv4.Stateid4 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stateid
}

// Reclaims counts the times the open was reclaimed after a server restart.
func (o *Open) Reclaims() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reclaims
}

// current returns the stateid to use now, or why the open is gone.
func (o *Open) current() (nfsv4.Stateid4, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stateid, o.lost
}

// doOpen runs ops built on the open's current stateid.
func (o *Open) doOpen(ctx context.Context, build func(sid nfsv4.Stateid4) []nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	var lost error
	res, err := o.c.do(ctx, func() []nfsv4.NfsArgop4 {
		sid, err := o.current()
		lost = err
		return build(sid)
	})
	if lost != nil {
		return nil, lost
	}
	return res, err
}

// WriteResult is WRITE's answer.
type WriteResult struct {
	Count     uint32
	Committed nfsv4.StableHow4
	Verifier  [8]byte
}

// Write writes data (at most MaxIO bytes) at off with the given stability (UNSTABLE4 or
// FILE_SYNC4). A short write is an error.
func (o *Open) Write(ctx context.Context, off uint64, data []byte, stable nfsv4.StableHow4) (WriteResult, error) {
	if len(data) > MaxIO {
		return WriteResult{}, fmt.Errorf("write of %d bytes exceeds %d", len(data), MaxIO)
	}
	res, err := o.doOpen(ctx, func(sid nfsv4.Stateid4) []nfsv4.NfsArgop4 {
		return []nfsv4.NfsArgop4{putfh(o.fh), &nfsv4.NfsArgop4_OP_WRITE{Opwrite: nfsv4.Write4args{Stateid: sid, Offset: off, Stable: stable, Data: data}}}
	})
	if err != nil {
		return WriteResult{}, fmt.Errorf("WRITE: %w", err)
	}
	r, err := result[*nfsv4.NfsResop4_OP_WRITE](res, 1)
	if err != nil {
		return WriteResult{}, err
	}
	ok, isOK := r.Opwrite.(*nfsv4.Write4res_NFS4_OK)
	if !isOK {
		return WriteResult{}, fmt.Errorf("%w: WRITE without a result", ErrBadReply)
	}
	w := WriteResult{Count: ok.Resok4.Count, Committed: ok.Resok4.Committed, Verifier: ok.Resok4.Writeverf}
	if int(w.Count) != len(data) {
		return w, fmt.Errorf("short WRITE: %d of %d bytes", w.Count, len(data))
	}
	return w, nil
}

// Commit commits the whole file and returns the write verifier; data written UNSTABLE is durable
// once a COMMIT returns the verifier the WRITEs returned.
func (o *Open) Commit(ctx context.Context) ([8]byte, error) {
	res, err := o.c.Compound(ctx, putfh(o.fh), &nfsv4.NfsArgop4_OP_COMMIT{Opcommit: nfsv4.Commit4args{}})
	if err != nil {
		return [8]byte{}, fmt.Errorf("COMMIT: %w", err)
	}
	r, err := result[*nfsv4.NfsResop4_OP_COMMIT](res, 1)
	if err != nil {
		return [8]byte{}, err
	}
	ok, isOK := r.Opcommit.(*nfsv4.Commit4res_NFS4_OK)
	if !isOK {
		return [8]byte{}, fmt.Errorf("%w: COMMIT without a verifier", ErrBadReply)
	}
	return ok.Resok4.Writeverf, nil
}

// Read reads up to n (at most MaxIO) bytes at off.
func (o *Open) Read(ctx context.Context, off uint64, n uint32) (data []byte, eof bool, err error) {
	n = min(n, MaxIO)
	res, err := o.doOpen(ctx, func(sid nfsv4.Stateid4) []nfsv4.NfsArgop4 {
		return []nfsv4.NfsArgop4{putfh(o.fh), &nfsv4.NfsArgop4_OP_READ{Opread: nfsv4.Read4args{Stateid: sid, Offset: off, Count: n}}}
	})
	if err != nil {
		return nil, false, fmt.Errorf("READ: %w", err)
	}
	r, err := result[*nfsv4.NfsResop4_OP_READ](res, 1)
	if err != nil {
		return nil, false, err
	}
	ok, isOK := r.Opread.(*nfsv4.Read4res_NFS4_OK)
	if !isOK {
		return nil, false, fmt.Errorf("%w: READ without data", ErrBadReply)
	}
	return ok.Resok4.Data, ok.Resok4.Eof, nil
}

// ReadAll reads the whole file.
func (o *Open) ReadAll(ctx context.Context) ([]byte, error) {
	var out []byte
	for {
		b, eof, err := o.Read(ctx, uint64(len(out)), MaxIO)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		if eof || len(b) == 0 {
			return out, nil
		}
	}
}

// Close closes the open; the client stops reclaiming it.
func (o *Open) Close(ctx context.Context) error {
	_, err := o.doOpen(ctx, func(sid nfsv4.Stateid4) []nfsv4.NfsArgop4 {
		return []nfsv4.NfsArgop4{putfh(o.fh), &nfsv4.NfsArgop4_OP_CLOSE{Opclose: nfsv4.Close4args{OpenStateid: sid}}}
	})
	o.c.mu.Lock()
	delete(o.c.opens, o)
	o.c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("CLOSE: %w", err)
	}
	return nil
}
