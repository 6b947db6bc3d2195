package oncrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// words encodes XDR words big-endian.
func words(ws ...uint32) []byte {
	b := make([]byte, 4*len(ws))
	for i, w := range ws {
		binary.BigEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// record frames body as fragments of the given sizes (the rest goes in the last one).
func record(body []byte, sizes ...int) []byte {
	var out []byte
	for _, n := range sizes {
		out = append(out, words(uint32(n))...)
		out = append(out, body[:n]...)
		body = body[n:]
	}
	out = append(out, words(lastFragment|uint32(len(body)))...)
	return append(out, body...)
}

// encodeReply is DecodeReply's inverse, for round trips.
func encodeReply(r Reply) []byte {
	if !r.Accepted {
		b := words(r.XID, msgReply, replyDenied, uint32(r.Reject))
		switch r.Reject {
		case RPCMismatch:
			b = append(b, words(r.Low, r.High)...)
		case AuthError:
			b = append(b, words(r.AuthStat)...)
		}
		return b
	}
	b := words(r.XID, msgReply, replyAccepted, authNone, 0, uint32(r.Accept))
	if r.Accept == ProgMismatch {
		b = append(b, words(r.Low, r.High)...)
	}
	return append(b, r.Body...)
}

func TestNullCall(t *testing.T) {
	got := NullCall(0x01020304, ProgramNFS, VersionNFS4)
	want := words(
		lastFragment|40,
		0x01020304, msgCall, 2, 100003, 4, 0,
		0, 0,
		0, 0,
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("NullCall:\n got %x\nwant %x", got, want)
	}
	// The call must read back as one record of 40 bytes.
	rec, err := ReadRecord(bytes.NewReader(got), MaxReplySize)
	if err != nil || len(rec) != 40 {
		t.Fatalf("ReadRecord(NullCall) = %d bytes, %v; want 40 bytes", len(rec), err)
	}
}

func TestReadRecord(t *testing.T) {
	body := []byte("0123456789abcdef")
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []byte
		wantErr error
	}{
		{name: "one fragment", in: record(body), max: 100, want: body},
		{name: "three fragments", in: record(body, 3, 5), max: 100, want: body},
		{name: "empty fragments", in: record(body, 0, 0, 16), max: 100, want: body},
		{name: "empty record", in: record(nil), max: 100, want: []byte{}},
		{name: "exactly max", in: record(body, 8), max: 16, want: body},
		{name: "one byte over max", in: record(body, 8), max: 15, wantErr: ErrRecordTooLarge},
		{name: "huge marker", in: words(lastFragment | 0x7fffffff), max: 100, wantErr: ErrRecordTooLarge},
		{name: "no marker", in: nil, max: 100, wantErr: io.EOF},
		{name: "short marker", in: []byte{0x80, 0}, max: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "short body", in: record(body)[:10], max: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "missing last fragment", in: record(body, 16)[:20], max: 100, wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadRecord(bytes.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadRecord error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("ReadRecord = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDecodeReply(t *testing.T) {
	const xid = 7
	tests := []struct {
		name    string
		in      []byte
		want    Reply
		wantErr string // substring of DecodeReply's error
		errFor  string // substring of want.Err(xid); "" means nil
	}{
		{
			name: "success",
			in:   words(xid, msgReply, replyAccepted, authNone, 0, 0),
			want: Reply{XID: xid, Accepted: true, Accept: Success, Body: []byte{}},
		},
		{
			name: "success with verifier and results",
			in:   append(words(xid, msgReply, replyAccepted, 1, 5, 0x61626364, 0x65000000, 0), 9, 9),
			want: Reply{XID: xid, Accepted: true, Accept: Success, Body: []byte{9, 9}},
		},
		{
			name:   "prog mismatch",
			in:     words(xid, msgReply, replyAccepted, 0, 0, 2, 3, 3),
			want:   Reply{XID: xid, Accepted: true, Accept: ProgMismatch, Low: 3, High: 3, Body: []byte{}},
			errFor: "PROG_MISMATCH (server speaks versions 3..3)",
		},
		{
			name:   "prog unavailable",
			in:     words(xid, msgReply, replyAccepted, 0, 0, 1),
			want:   Reply{XID: xid, Accepted: true, Accept: ProgUnavail, Body: []byte{}},
			errFor: "PROG_UNAVAIL",
		},
		{
			name:   "rpc mismatch",
			in:     words(xid, msgReply, replyDenied, 0, 2, 2),
			want:   Reply{XID: xid, Reject: RPCMismatch, Low: 2, High: 2},
			errFor: "RPC_MISMATCH",
		},
		{
			name:   "auth error",
			in:     words(xid, msgReply, replyDenied, 1, 5),
			want:   Reply{XID: xid, Reject: AuthError, AuthStat: 5},
			errFor: "AUTH_ERROR (auth_stat 5)",
		},
		{
			name:   "other xid",
			in:     words(xid+1, msgReply, replyAccepted, 0, 0, 0),
			want:   Reply{XID: xid + 1, Accepted: true, Body: []byte{}},
			errFor: "does not match",
		},
		{name: "a call, not a reply", in: words(xid, msgCall, 2, 100003, 4, 0), wantErr: "not a reply"},
		{name: "bad reply_stat", in: words(xid, msgReply, 2), wantErr: "unknown reply_stat 2"},
		{name: "bad reject_stat", in: words(xid, msgReply, replyDenied, 9), wantErr: "unknown reject_stat 9"},
		{name: "empty", in: nil, wantErr: "truncated"},
		{name: "no accept_stat", in: words(xid, msgReply, replyAccepted, 0, 0), wantErr: "truncated"},
		{name: "verifier longer than the reply", in: words(xid, msgReply, replyAccepted, 1, 8, 0), wantErr: "truncated"},
		{name: "verifier over the RFC limit", in: words(xid, msgReply, replyAccepted, 1, 404), wantErr: "exceeds 400"},
		{name: "mismatch without range", in: words(xid, msgReply, replyDenied, 0, 2), wantErr: "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeReply(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeReply error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeReply: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeReply = %+v, want %+v", got, tt.want)
			}
			callErr := got.Err(xid)
			switch {
			case tt.errFor == "" && callErr != nil:
				t.Fatalf("Err(%d) = %v, want nil", xid, callErr)
			case tt.errFor != "" && (callErr == nil || !strings.Contains(callErr.Error(), tt.errFor)):
				t.Fatalf("Err(%d) = %v, want it to contain %q", xid, callErr, tt.errFor)
			}
		})
	}
}

// FuzzDecodeReply feeds arbitrary record-marked streams through ReadRecord and DecodeReply: they
// must never panic or over-allocate, and whatever decodes must survive a re-encode unchanged.
func FuzzDecodeReply(f *testing.F) {
	f.Add(record(words(1, msgReply, replyAccepted, authNone, 0, 0)))
	f.Add(record(words(1, msgReply, replyDenied, 0, 2, 2), 8))
	f.Add(record(words(1, msgReply, replyAccepted, 1, 3, 0x01020300, 2, 4, 4)))
	f.Add(NullCall(3, ProgramNFS, VersionNFS4))
	f.Fuzz(func(t *testing.T, stream []byte) {
		rec, err := ReadRecord(bytes.NewReader(stream), MaxReplySize)
		if err != nil {
			return
		}
		if len(rec) > MaxReplySize || len(rec) > len(stream) {
			t.Fatalf("record of %d bytes from a %d-byte stream, limit %d", len(rec), len(stream), MaxReplySize)
		}
		r, err := DecodeReply(rec)
		if err != nil {
			return
		}
		_ = r.Err(r.XID) // must not panic
		again, err := DecodeReply(encodeReply(r))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", r, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip changed the reply:\n got %+v\nwant %+v", again, r)
		}
	})
}

// TestGaneshaReplies decodes replies nfs-ganesha 4.3 sent to NULL calls (captured from a server
// configured for NFSv4 only; also in the fuzz corpus).
func TestGaneshaReplies(t *testing.T) {
	tests := []struct {
		name      string
		hex       string
		xid       uint32
		want      AcceptStat
		low, high uint32
	}{
		{name: "NFSv4 NULL", hex: "800000185eed00010000000100000000000000000000000000000000", xid: 0x5eed0001, want: Success},
		{name: "NFSv3 NULL", hex: "800000205eed000200000001000000000000000000000000000000020000000400000004", xid: 0x5eed0002,
			want: ProgMismatch, low: 4, high: 4},
		{name: "MOUNT NULL", hex: "800000185eed00040000000100000000000000000000000000000001", xid: 0x5eed0004, want: ProgUnavail},
		{name: "NFSv4 procedure 7", hex: "800000185eed00050000000100000000000000000000000000000003", xid: 0x5eed0005, want: ProcUnavail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := ReadRecord(bytes.NewReader(raw), MaxReplySize)
			if err != nil {
				t.Fatal(err)
			}
			r, err := DecodeReply(rec)
			if err != nil {
				t.Fatal(err)
			}
			if r.XID != tt.xid || !r.Accepted || r.Accept != tt.want || r.Low != tt.low || r.High != tt.high {
				t.Fatalf("DecodeReply = %+v, want xid %#x accepted %s %d..%d", r, tt.xid, tt.want, tt.low, tt.high)
			}
			if (r.Err(tt.xid) == nil) != (tt.want == Success) {
				t.Fatalf("Err = %v for %s", r.Err(tt.xid), tt.want)
			}
		})
	}
}
