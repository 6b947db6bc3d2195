package nfs4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// reply encodes an accepted, successful RPC reply carrying res (nil: a NULL reply).
func reply(t testing.TB, xid uint32, res *nfsv4.Compound4res) []byte {
	t.Helper()
	var b bytes.Buffer
	msg := rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: &rpcv2.ReplyBody_MSG_ACCEPTED{Areply: rpcv2.AcceptedReply{
		Verf: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, ReplyData: &rpcv2.AcceptedReplyData_SUCCESS{},
	}}}}
	if _, err := msg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if res != nil {
		if _, err := res.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func getfhReply(fh []byte) *nfsv4.Compound4res {
	return &nfsv4.Compound4res{Resarray: []nfsv4.NfsResop4{
		&nfsv4.NfsResop4_OP_PUTROOTFH{},
		&nfsv4.NfsResop4_OP_GETFH{Opgetfh: &nfsv4.Getfh4res_NFS4_OK{Resok4: nfsv4.Getfh4resok{Object: fh}}},
	}}
}

func TestDecodeReply(t *testing.T) {
	fh := []byte{1, 2, 3, 4, 5}
	res, err := DecodeReply(reply(t, 7, getfhReply(fh)), 7)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fhResult(res.Resarray, 1)
	if err != nil || !bytes.Equal(got, fh) {
		t.Fatalf("GETFH = %x, %v; want %x", got, err, fh)
	}
	if res, err := DecodeReply(reply(t, 8, nil), 8); res != nil || err != nil {
		t.Fatalf("NULL reply = %v, %v; want nil, nil", res, err)
	}

	var denied bytes.Buffer
	msg := rpcv2.RpcMsg{Xid: 9, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: &rpcv2.ReplyBody_MSG_DENIED{Rreply: &rpcv2.RejectedReply_AUTH_ERROR{Stat: rpcv2.AUTH_TOOWEAK}}}}
	if _, err := msg.WriteTo(&denied); err != nil {
		t.Fatal(err)
	}
	var rpcErr *RPCError
	if _, err := DecodeReply(denied.Bytes(), 9); !errors.As(err, &rpcErr) || !rpcErr.Denied || rpcErr.Auth != rpcv2.AUTH_TOOWEAK {
		t.Fatalf("denied reply: %v, want an RPCError with AUTH_TOOWEAK", err)
	}

	good := reply(t, 7, getfhReply(fh))
	for name, b := range map[string][]byte{
		"other xid":      good,
		"empty":          nil,
		"cut in header":  good[:10],
		"cut in results": good[:len(good)-3],
		"a call":         binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 7), 0),
	} {
		xid := uint32(7)
		if name == "other xid" {
			xid = 6
		}
		if _, err := DecodeReply(b, xid); !errors.Is(err, ErrBadReply) {
			t.Errorf("%s: %v, want ErrBadReply", name, err)
		}
	}
}

func TestCheckResults(t *testing.T) {
	ops := []nfsv4.NfsArgop4{&nfsv4.NfsArgop4_OP_PUTROOTFH{}, &nfsv4.NfsArgop4_OP_GETFH{}}
	if _, err := checkResults(getfhReply([]byte{1}), ops); err != nil {
		t.Fatalf("matching results: %v", err)
	}
	stale := &nfsv4.Compound4res{Status: nfsv4.NFS4ERR_STALE, Resarray: []nfsv4.NfsResop4{&nfsv4.NfsResop4_OP_PUTROOTFH{Opputrootfh: nfsv4.Putrootfh4res{Status: nfsv4.NFS4ERR_STALE}}}}
	_, err := checkResults(stale, ops)
	var opErr *OpError
	if !errors.Is(err, ErrStale) || !errors.As(err, &opErr) || opErr.Op != nfsv4.OP_PUTROOTFH || opErr.Index != 0 {
		t.Fatalf("failed PUTROOTFH: %v, want an OpError of PUTROOTFH wrapping NFS4ERR_STALE", err)
	}
	illegal := &nfsv4.Compound4res{Status: nfsv4.NFS4ERR_OP_ILLEGAL, Resarray: []nfsv4.NfsResop4{
		&nfsv4.NfsResop4_OP_PUTROOTFH{}, &nfsv4.NfsResop4_OP_ILLEGAL{Opillegal: nfsv4.Illegal4res{Status: nfsv4.NFS4ERR_OP_ILLEGAL}}}}
	if _, err := checkResults(illegal, ops); !errors.As(err, &opErr) || opErr.Op != nfsv4.OP_ILLEGAL || opErr.Status != ErrOpIllegal {
		t.Fatalf("OP_ILLEGAL answer: %v, want an OpError of OP_ILLEGAL", err)
	}
	wrong := &nfsv4.Compound4res{Resarray: []nfsv4.NfsResop4{&nfsv4.NfsResop4_OP_PUTROOTFH{}, &nfsv4.NfsResop4_OP_SAVEFH{}}}
	if _, err := checkResults(wrong, ops); !errors.Is(err, ErrBadReply) {
		t.Fatalf("result for another op: %v, want ErrBadReply", err)
	}
	short := &nfsv4.Compound4res{Resarray: []nfsv4.NfsResop4{&nfsv4.NfsResop4_OP_PUTROOTFH{}}}
	if _, err := checkResults(short, ops); !errors.Is(err, ErrBadReply) {
		t.Fatalf("a missing result with NFS4_OK: %v, want ErrBadReply", err)
	}
}

func TestStatus(t *testing.T) {
	err := fmt.Errorf("reading: %w", &OpError{Op: nfsv4.OP_SEQUENCE, Status: ErrBadSession})
	if !errors.Is(err, ErrBadSession) || errors.Is(err, ErrStaleClientID) || StatusOf(err) != ErrBadSession {
		t.Fatalf("%v: errors.Is and StatusOf must see NFS4ERR_BADSESSION only", err)
	}
	if StatusOf(errors.New("x")) != 0 || StatusOf(nil) != 0 {
		t.Fatal("StatusOf of an error without a status must be 0")
	}
	for s, want := range map[Status]string{ErrGrace: "NFS4ERR_GRACE", ErrStaleStateID: "NFS4ERR_STALE_STATEID", Status(99999): "NFS4ERR_99999"} {
		if s.Error() != want {
			t.Errorf("Status(%d) = %q, want %q", int32(s), s.Error(), want)
		}
	}
}

func encodeAttrs(size, fileid uint64, mode uint32) nfsv4.Fattr4 {
	var v []byte
	v = binary.BigEndian.AppendUint32(v, uint32(nfsv4.NF4REG))
	v = binary.BigEndian.AppendUint64(v, size)
	v = binary.BigEndian.AppendUint64(v, fileid)
	v = binary.BigEndian.AppendUint32(v, mode)
	return nfsv4.Fattr4{Attrmask: bitmap(nfsv4.FATTR4_TYPE, nfsv4.FATTR4_SIZE, nfsv4.FATTR4_FILEID, nfsv4.FATTR4_MODE), AttrVals: v}
}

func TestDecodeAttrs(t *testing.T) {
	a, err := DecodeAttrs(encodeAttrs(4096, 12, 0o644))
	if err != nil || a.Type != nfsv4.NF4REG || a.Size != 4096 || a.FileID != 12 || a.Mode != 0o644 {
		t.Fatalf("DecodeAttrs = %+v, %v", a, err)
	}
	f := encodeAttrs(1, 2, 3)
	for name, bad := range map[string]nfsv4.Fattr4{
		"cut short":         {Attrmask: f.Attrmask, AttrVals: f.AttrVals[:len(f.AttrVals)-1]},
		"trailing bytes":    {Attrmask: f.Attrmask, AttrVals: append(append([]byte{}, f.AttrVals...), 0, 0, 0, 0)},
		"unknown attribute": {Attrmask: bitmap(nfsv4.FATTR4_ACL), AttrVals: make([]byte, 4)},
	} {
		if _, err := DecodeAttrs(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if got, want := AttrRequest(), bitmap(attrIDs...); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("AttrRequest = %v, want two words %v", got, want)
	}
}

func TestEncodeCall(t *testing.T) {
	b, err := encodeCall(42, Cred{Machine: "m", UID: 1, GID: 2}, &nfsv4.Compound4args{Minorversion: 1, Argarray: []nfsv4.NfsArgop4{&nfsv4.NfsArgop4_OP_PUTROOTFH{}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := binary.BigEndian.Uint32(b); m != lastFragment|uint32(len(b)-4) {
		t.Fatalf("record marker %#x for %d bytes", m, len(b)-4)
	}
	var msg rpcv2.RpcMsg
	r := bytes.NewReader(b[4:])
	if _, err := msg.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	call, ok := msg.Body.(*rpcv2.RpcMsgBody_CALL)
	if !ok || msg.Xid != 42 || call.Cbody.Prog != nfsv4.NFS4_PROGRAM_PROGRAM_NUMBER || call.Cbody.Vers != 4 ||
		call.Cbody.Proc != procCompound || call.Cbody.Cred.Flavor != rpcv2.AUTH_SYS {
		t.Fatalf("call header %+v", msg)
	}
	var args nfsv4.Compound4args
	if _, err := args.ReadFrom(r); err != nil || args.Minorversion != 1 || len(args.Argarray) != 1 {
		t.Fatalf("COMPOUND args %+v, %v", args, err)
	}
}

// FuzzDecodeReply: no reply, however malformed, panics the client or is taken for results.
func FuzzDecodeReply(f *testing.F) {
	f.Add(reply(f, 7, getfhReply([]byte{1, 2, 3})))
	f.Add(reply(f, 7, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := DecodeReply(b, 7)
		if err != nil || res == nil {
			return
		}
		// Whatever decoded must survive the client's own result checks and accessors.
		ops := []nfsv4.NfsArgop4{&nfsv4.NfsArgop4_OP_PUTROOTFH{}, &nfsv4.NfsArgop4_OP_GETFH{}}
		if results, err := checkResults(res, ops); err == nil {
			_, _ = fhResult(results, 1)
			_, _ = attrResult(results, 1)
			_, _ = openResult(results, 0)
		}
	})
}

// FuzzDecodeAttrs: attribute values never panic the decoder.
func FuzzDecodeAttrs(f *testing.F) {
	a := encodeAttrs(4096, 12, 0o644)
	f.Add(a.Attrmask[0], uint32(0), a.AttrVals)
	f.Add(uint32(1<<nfsv4.FATTR4_FSID|1<<nfsv4.FATTR4_CHANGE), uint32(1<<(nfsv4.FATTR4_TIME_MODIFY-32)), make([]byte, 36))
	f.Fuzz(func(t *testing.T, w0, w1 uint32, vals []byte) {
		_, _ = DecodeAttrs(nfsv4.Fattr4{Attrmask: []uint32{w0, w1}, AttrVals: vals})
	})
}
