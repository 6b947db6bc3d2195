// Package oncrpc is the small slice of ONC RPC (RFC 5531) the NFS server agent needs to ask
// ganesha whether it is alive: a NULL call encoder, a record-marking reader (RFC 5531 section 11)
// and a reply decoder. Everything here is pure: no sockets, so it can be fuzzed.
package oncrpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Program and version numbers of the protocols the agent probes.
const (
	ProgramNFS  = 100003
	VersionNFS4 = 4
	// ProcNull is procedure 0, which every RPC program answers with an empty result.
	ProcNull = 0
)

const (
	rpcVersion = 2

	msgCall  = 0
	msgReply = 1

	replyAccepted = 0
	replyDenied   = 1

	authNone = 0

	// lastFragment is the record marker bit that ends a record.
	lastFragment = 1 << 31

	// MaxReplySize bounds the records ReadRecord reassembles. A NULL reply is 24 bytes plus the
	// verifier (at most 400 bytes of opaque body); anything near this bound is not a NULL reply.
	MaxReplySize = 4096
	// maxAuthBody is the RFC 5531 limit on an opaque_auth body.
	maxAuthBody = 400
)

// AcceptStat is the accept_stat of an accepted reply.
type AcceptStat uint32

// Accept states of RFC 5531.
const (
	Success      AcceptStat = 0
	ProgUnavail  AcceptStat = 1
	ProgMismatch AcceptStat = 2
	ProcUnavail  AcceptStat = 3
	GarbageArgs  AcceptStat = 4
	SystemErr    AcceptStat = 5
)

func (s AcceptStat) String() string {
	switch s {
	case Success:
		return "SUCCESS"
	case ProgUnavail:
		return "PROG_UNAVAIL"
	case ProgMismatch:
		return "PROG_MISMATCH"
	case ProcUnavail:
		return "PROC_UNAVAIL"
	case GarbageArgs:
		return "GARBAGE_ARGS"
	case SystemErr:
		return "SYSTEM_ERR"
	}
	return fmt.Sprintf("accept_stat(%d)", uint32(s))
}

// RejectStat is the reject_stat of a denied reply.
type RejectStat uint32

// Reject states of RFC 5531.
const (
	RPCMismatch RejectStat = 0
	AuthError   RejectStat = 1
)

func (s RejectStat) String() string {
	switch s {
	case RPCMismatch:
		return "RPC_MISMATCH"
	case AuthError:
		return "AUTH_ERROR"
	}
	return fmt.Sprintf("reject_stat(%d)", uint32(s))
}

// Reply is a decoded RPC reply header. Results that follow an accepted reply are left in Body.
type Reply struct {
	XID      uint32
	Accepted bool
	// Accept is set when Accepted.
	Accept AcceptStat
	// Reject is set when not Accepted.
	Reject RejectStat
	// Low and High are the supported version range of PROG_MISMATCH and RPC_MISMATCH.
	Low, High uint32
	// AuthStat is the auth_stat of an AUTH_ERROR.
	AuthStat uint32
	// Body holds what follows an accepted reply's accept_stat (procedure results); empty for NULL.
	Body []byte
}

// Err says why a reply is not a successful answer to the call with the given xid, or nil.
func (r Reply) Err(xid uint32) error {
	switch {
	case r.XID != xid:
		return fmt.Errorf("reply xid %#x does not match call xid %#x", r.XID, xid)
	case !r.Accepted && r.Reject == RPCMismatch:
		return fmt.Errorf("call denied: %s (server speaks RPC %d..%d)", r.Reject, r.Low, r.High)
	case !r.Accepted && r.Reject == AuthError:
		return fmt.Errorf("call denied: %s (auth_stat %d)", r.Reject, r.AuthStat)
	case !r.Accepted:
		return fmt.Errorf("call denied: %s", r.Reject)
	case r.Accept == ProgMismatch:
		return fmt.Errorf("call not accepted: %s (server speaks versions %d..%d)", r.Accept, r.Low, r.High)
	case r.Accept != Success:
		return fmt.Errorf("call not accepted: %s", r.Accept)
	}
	return nil
}

// NullCall returns a complete, record-marked NULL call (AUTH_NONE credentials and verifier) for
// prog/vers, ready to write to a TCP stream.
func NullCall(xid, prog, vers uint32) []byte {
	words := []uint32{
		0, // record marker, filled below
		xid, msgCall, rpcVersion, prog, vers, ProcNull,
		authNone, 0, // credentials: flavor, body length
		authNone, 0, // verifier: flavor, body length
	}
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.BigEndian.PutUint32(b[4*i:], w)
	}
	binary.BigEndian.PutUint32(b, lastFragment|uint32(len(b)-4))
	return b
}

// ErrRecordTooLarge is returned by ReadRecord for records longer than its limit.
var ErrRecordTooLarge = errors.New("rpc record too large")

// ReadRecord reads one record-marked record from r, joining its fragments, and returns its bytes.
// It refuses records longer than max bytes without reading their body.
func ReadRecord(r io.Reader, max int) ([]byte, error) {
	var rec []byte
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("reading record marker: %w", err)
		}
		m := binary.BigEndian.Uint32(hdr[:])
		n := int(m &^ lastFragment)
		if n > max-len(rec) {
			return nil, fmt.Errorf("%w: fragment of %d bytes after %d, limit %d", ErrRecordTooLarge, n, len(rec), max)
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			return nil, fmt.Errorf("reading record fragment: %w", err)
		}
		if m&lastFragment != 0 {
			return rec, nil
		}
	}
}

// ErrShortReply is wrapped by DecodeReply errors for replies cut short.
var ErrShortReply = errors.New("rpc reply truncated")

// DecodeReply decodes the header of a reply record (without its record marker).
func DecodeReply(b []byte) (Reply, error) {
	d := decoder{b: b}
	var r Reply
	r.XID = d.uint32()
	if mt := d.uint32(); d.err == nil && mt != msgReply {
		return Reply{}, fmt.Errorf("rpc message type %d is not a reply", mt)
	}
	switch stat := d.uint32(); {
	case d.err != nil:
	case stat == replyAccepted:
		r.Accepted = true
		d.opaqueAuth()
		r.Accept = AcceptStat(d.uint32())
		if d.err == nil && r.Accept == ProgMismatch {
			r.Low, r.High = d.uint32(), d.uint32()
		}
		if d.err == nil {
			r.Body = d.b
		}
	case stat == replyDenied:
		r.Reject = RejectStat(d.uint32())
		switch {
		case d.err != nil:
		case r.Reject == RPCMismatch:
			r.Low, r.High = d.uint32(), d.uint32()
		case r.Reject == AuthError:
			r.AuthStat = d.uint32()
		default:
			return Reply{}, fmt.Errorf("unknown reject_stat %d", uint32(r.Reject))
		}
	default:
		return Reply{}, fmt.Errorf("unknown reply_stat %d", stat)
	}
	if d.err != nil {
		return Reply{}, d.err
	}
	return r, nil
}

// decoder reads XDR items from b, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.err = ErrShortReply
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

// opaqueAuth skips an opaque_auth: flavor, then a length-prefixed body padded to 4 bytes.
func (d *decoder) opaqueAuth() {
	_ = d.uint32() // flavor
	n := d.uint32()
	if d.err != nil {
		return
	}
	if n > maxAuthBody {
		d.err = fmt.Errorf("verifier body of %d bytes exceeds %d", n, maxAuthBody)
		return
	}
	padded := int(n+3) &^ 3
	if len(d.b) < padded {
		d.err = ErrShortReply
		return
	}
	d.b = d.b[padded:]
}
