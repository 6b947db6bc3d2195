// Package nfs4 is a real NFSv4.1/4.2 client for tests, on the XDR types of
// github.com/buildbarn/go-xdr: ONC RPC over TCP with record marking and AUTH_SYS, sessions
// (EXCHANGE_ID, CREATE_SESSION, SEQUENCE over a slot table), a lease keeper, and the file
// operations tests need (LOOKUP, OPEN, WRITE, COMMIT, READ, GETATTR, CLOSE, REMOVE, READDIR,
// GET_DIR_DELEGATION). Unlike libnfs it keeps file handles and opens between calls, so a test can
// hold both across a server restart or a failover.
//
// With Config.Recover the client recovers from a server restart as the Linux client does: it
// reconnects, creates a new session on its client ID (NFS4ERR_BADSESSION), or, when the server
// forgot the client ID too (NFS4ERR_STALE_CLIENTID), makes a new one with the same owner and
// verifier, reclaims every open with CLAIM_PREVIOUS and sends RECLAIM_COMPLETE; NFS4ERR_GRACE
// and NFS4ERR_DELAY are retried. Every wait is bounded: each RPC by Config.CallTimeout, each
// operation with its retries by its context or Config.OpTimeout.
package nfs4

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
)

// Config configures a client.
type Config struct {
	// Addr is the server's host:port. Dial, when set, is used instead, e.g. to follow a server
	// that comes back on another address (a Service IP would not change; test servers do).
	Addr string
	Dial func(ctx context.Context) (net.Conn, error)
	// Owner is the client owner (co_ownerid): the identity the server keeps recovery records
	// under. Each client needs its own.
	Owner string
	// MinorVersion is 1 or 2 (0 means 1).
	MinorVersion uint32
	// Cred is the AUTH_SYS identity (root on "nfs4-test" when empty).
	Cred Cred
	// Recover turns on Linux-style recovery (see the package comment). Without it, errors such
	// as NFS4ERR_BADSESSION reach the caller, and Recover can be called by hand.
	Recover bool
	// CallTimeout bounds one RPC (default 10 s); OpTimeout one operation with its retries when
	// its context has no deadline (default 2 min).
	CallTimeout, OpTimeout time.Duration
	// Slots is how many requests may be in flight on the session (default 8).
	Slots int
	// Logf, when set, receives one line per recovery step.
	Logf func(format string, args ...any)
}

// Client is one NFSv4.1+ client: one client ID, one session at a time, one TCP connection at
// a time. It is safe for concurrent use.
type Client struct {
	cfg      Config
	verifier [8]byte
	owner    []byte // open owner of every open
	stop     chan struct{}
	stopped  chan struct{}

	dialMu sync.Mutex // one dial at a time
	recMu  sync.Mutex // one recovery at a time

	mu         sync.Mutex
	conn       *rpcConn
	xid        uint32
	clientID   uint64
	csSeq      uint32
	sess       *session // nil while a new one is needed
	gen        int      // bumped with every new session
	lease      time.Duration
	opens      map[*Open]struct{}
	recoveries []Recovery
	keeperErr  error
	closed     bool
}

// session is one NFSv4.1 session and its slot table.
type session struct {
	id    [16]byte
	gen   int
	slots chan uint32 // free slot ids
	seq   []uint32    // next sequence id per slot; touched only by the slot's holder
}

func newSession(id [16]byte, gen int, n uint32) *session {
	s := &session{id: id, gen: gen, slots: make(chan uint32, n), seq: make([]uint32, n)}
	for i := range n {
		s.seq[i] = 1
		s.slots <- i
	}
	return s
}

// Recovery is what one recovery found and did, for tests to assert on.
type Recovery struct {
	// Trigger is the error that started it.
	Trigger error
	// CreateSession is the status CREATE_SESSION on the old client ID got (0 if it worked).
	CreateSession Status
	// NewClientID tells whether the client had to make a new client ID (the server restarted).
	NewClientID bool
	// Reclaimed and Lost count the opens reclaimed with CLAIM_PREVIOUS and those the server
	// refused (they then fail with ErrOpenLost).
	Reclaimed, Lost int
}

// ErrOpenLost is wrapped by the errors of an open whose reclaim the server refused.
var ErrOpenLost = errors.New("open state lost in server recovery")

// ErrClosed is returned by a closed client.
var ErrClosed = errors.New("nfs4 client closed")

// DialFrom is a Config.Dial connecting to addr from the local address ip, as a kubelet mounts
// from its node's address.
func DialFrom(ip, addr string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// Dial connects (retrying refused connections until ctx ends), establishes a client ID and a session, sends RECLAIM_COMPLETE (a new client
// has nothing to reclaim, and without it the server holds its OPENs in grace), reads the lease
// time and starts the lease keeper, which SEQUENCEs three times per lease.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Owner == "" {
		return nil, errors.New("nfs4: Config.Owner is required")
	}
	if cfg.Addr == "" && cfg.Dial == nil {
		return nil, errors.New("nfs4: Config.Addr or Config.Dial is required")
	}
	if cfg.MinorVersion == 0 {
		cfg.MinorVersion = 1
	}
	if cfg.Cred.Machine == "" {
		cfg.Cred.Machine = "nfs4-test"
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 2 * time.Minute
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 8
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Client{cfg: cfg, owner: []byte("open-owner-" + cfg.Owner), opens: map[*Open]struct{}{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	_, _ = rand.Read(c.verifier[:])
	var x [4]byte
	_, _ = rand.Read(x[:])
	c.xid = uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3])
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	// A server that is still starting refuses connections: retry, as mount does.
	for attempt := 0; ; attempt++ {
		err := c.establish(ctx)
		if err == nil {
			break
		}
		c.dropConn()
		if !errors.Is(err, ErrConnection) || ctx.Err() != nil {
			return nil, err
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			return nil, err
		}
	}
	if err := c.reclaimComplete(ctx); err != nil {
		c.dropConn()
		return nil, err
	}
	res, err := c.Compound(ctx, &nfsv4.NfsArgop4_OP_PUTROOTFH{},
		&nfsv4.NfsArgop4_OP_GETATTR{Opgetattr: nfsv4.Getattr4args{AttrRequest: bitmap(nfsv4.FATTR4_LEASE_TIME)}})
	if err != nil {
		c.dropConn()
		return nil, fmt.Errorf("reading the lease time: %w", err)
	}
	a, err := attrResult(res, 1)
	if err != nil || a.LeaseTime == 0 {
		c.dropConn()
		return nil, fmt.Errorf("reading the lease time: %v: %w", a.LeaseTime, err)
	}
	c.lease = time.Duration(a.LeaseTime) * time.Second
	go c.keepLease()
	return c, nil
}

// Lease is the server's lease time.
func (c *Client) Lease() time.Duration { return c.lease }

// ClientID is the current client ID.
func (c *Client) ClientID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// SessionID is the current session's ID.
func (c *Client) SessionID() [16]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return [16]byte{}
	}
	return c.sess.id
}

// Recoveries lists the recoveries so far.
func (c *Client) Recoveries() []Recovery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Recovery(nil), c.recoveries...)
}

// KeeperErr is the lease keeper's last error (nil after a successful renewal).
func (c *Client) KeeperErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keeperErr
}

// Close stops the lease keeper, destroys the session (best effort, bounded) and disconnects.
// Opens are not closed: the server frees them when the lease expires.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.sess
	c.mu.Unlock()
	close(c.stop)
	<-c.stopped
	var err error
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.bare(ctx, &nfsv4.NfsArgop4_OP_DESTROY_SESSION{OpdestroySession: nfsv4.DestroySession4args{DsaSessionid: s.id}})
		cancel()
	}
	c.dropConn()
	return err
}

// Abandon stops the client without a word to the server, as a crashed client would.
func (c *Client) Abandon() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.stopped
	c.dropConn()
}

func (c *Client) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.OpTimeout)
}

func (c *Client) dropConn() {
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.close()
	}
}

// connection returns the live connection, dialing a new one if there is none.
func (c *Client) connection(ctx context.Context) (*rpcConn, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil && !conn.dead() {
		return conn, nil
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	conn = c.conn
	c.mu.Unlock()
	if conn != nil && !conn.dead() {
		return conn, nil
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if c.cfg.Dial != nil {
		nc, err = c.cfg.Dial(dctx)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", c.cfg.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dialing: %w", ErrConnection, err)
	}
	c.mu.Lock()
	c.xid += 1 << 20 // xids of different connections do not meet
	conn = newRPCConn(nc, c.cfg.Cred, c.xid)
	c.conn = conn
	c.mu.Unlock()
	return conn, nil
}

// bare sends a COMPOUND without SEQUENCE (EXCHANGE_ID, CREATE_SESSION, DESTROY_SESSION), once.
func (c *Client) bare(ctx context.Context, ops ...nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	conn, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	res, err := conn.call(ctx, c.cfg.CallTimeout, &nfsv4.Compound4args{Minorversion: c.cfg.MinorVersion, Argarray: ops})
	if err != nil {
		return nil, err
	}
	return checkResults(res, ops)
}

// checkResults turns a COMPOUND reply into its results, or an *OpError for the operation that
// failed, and makes sure each result answers the operation asked.
func checkResults(res *nfsv4.Compound4res, ops []nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	if res == nil {
		return nil, fmt.Errorf("%w: NULL reply to a COMPOUND", ErrBadReply)
	}
	if len(res.Resarray) > len(ops) {
		return nil, fmt.Errorf("%w: %d results for %d operations", ErrBadReply, len(res.Resarray), len(ops))
	}
	for i, r := range res.Resarray {
		if r == nil {
			return nil, fmt.Errorf("%w: result %d missing", ErrBadReply, i)
		}
		// A server that does not know an operation answers with OP_ILLEGAL's result, and stops.
		illegal := r.GetResop() == nfsv4.OP_ILLEGAL && i == len(res.Resarray)-1 && res.Status != nfsv4.NFS4_OK
		if r.GetResop() != ops[i].GetArgop() && !illegal {
			return nil, fmt.Errorf("%w: result %d is for operation %d, not %d (status %d)", ErrBadReply, i, r.GetResop(), ops[i].GetArgop(), res.Status)
		}
	}
	if res.Status != nfsv4.NFS4_OK {
		e := &OpError{Status: Status(res.Status), Index: len(res.Resarray) - 1}
		if n := len(res.Resarray); n > 0 {
			e.Op = res.Resarray[n-1].GetResop()
		} else if len(ops) > 0 {
			e.Op, e.Index = ops[0].GetArgop(), 0
		}
		return nil, e
	}
	if len(res.Resarray) != len(ops) {
		return nil, fmt.Errorf("%w: %d results for %d operations", ErrBadReply, len(res.Resarray), len(ops))
	}
	return res.Resarray, nil
}

// establish makes a client ID (EXCHANGE_ID with the client's owner and verifier) and a session
// on it.
func (c *Client) establish(ctx context.Context) error {
	res, err := c.bare(ctx, &nfsv4.NfsArgop4_OP_EXCHANGE_ID{OpexchangeId: nfsv4.ExchangeId4args{
		EiaClientowner:  nfsv4.ClientOwner4{CoVerifier: c.verifier, CoOwnerid: []byte(c.cfg.Owner)},
		EiaStateProtect: &nfsv4.StateProtect4A_SP4_NONE{},
	}})
	if err != nil {
		return fmt.Errorf("EXCHANGE_ID: %w", err)
	}
	ok, isOK := res[0].(*nfsv4.NfsResop4_OP_EXCHANGE_ID).OpexchangeId.(*nfsv4.ExchangeId4res_NFS4_OK)
	if !isOK {
		return fmt.Errorf("EXCHANGE_ID: %w: no result", ErrBadReply)
	}
	c.mu.Lock()
	c.clientID, c.csSeq = ok.EirResok4.EirClientid, ok.EirResok4.EirSequenceid
	c.mu.Unlock()
	return c.createSession(ctx)
}

// createSession makes a session on the current client ID and makes it current.
func (c *Client) createSession(ctx context.Context) error {
	c.mu.Lock()
	id, seq := c.clientID, c.csSeq
	c.mu.Unlock()
	slots := uint32(c.cfg.Slots)
	res, err := c.bare(ctx, &nfsv4.NfsArgop4_OP_CREATE_SESSION{OpcreateSession: nfsv4.CreateSession4args{
		CsaClientid: id,
		CsaSequence: seq,
		CsaForeChanAttrs: nfsv4.ChannelAttrs4{
			CaMaxrequestsize: maxRecord, CaMaxresponsesize: maxRecord, CaMaxresponsesizeCached: 64 << 10,
			CaMaxoperations: 16, CaMaxrequests: slots,
		},
		CsaBackChanAttrs: nfsv4.ChannelAttrs4{
			CaMaxrequestsize: 4096, CaMaxresponsesize: 4096, CaMaxoperations: 2, CaMaxrequests: 1,
		},
		CsaCbProgram: nfsv4.NFS4_CALLBACK_PROGRAM_NUMBER,
		CsaSecParms:  []nfsv4.CallbackSecParms4{&nfsv4.CallbackSecParms4_AUTH_NONE{}},
	}})
	if err != nil {
		return fmt.Errorf("CREATE_SESSION: %w", err)
	}
	ok, isOK := res[0].(*nfsv4.NfsResop4_OP_CREATE_SESSION).OpcreateSession.(*nfsv4.CreateSession4res_NFS4_OK)
	if !isOK {
		return fmt.Errorf("CREATE_SESSION: %w: no result", ErrBadReply)
	}
	n := min(slots, ok.CsrResok4.CsrForeChanAttrs.CaMaxrequests)
	if n == 0 {
		return fmt.Errorf("CREATE_SESSION: %w: no slots", ErrBadReply)
	}
	c.mu.Lock()
	c.csSeq++
	c.gen++
	c.sess = newSession(ok.CsrResok4.CsrSessionid, c.gen, n)
	c.mu.Unlock()
	return nil
}

func (c *Client) reclaimComplete(ctx context.Context) error {
	_, err := c.Compound(ctx, &nfsv4.NfsArgop4_OP_RECLAIM_COMPLETE{})
	if errors.Is(err, ErrCompleteAlready) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("RECLAIM_COMPLETE: %w", err)
	}
	return nil
}

// errNoSession stands for a session the client already knows to be gone.
var errNoSession = fmt.Errorf("no session: %w", ErrBadSession)

// Compound sends SEQUENCE followed by ops and returns the results of ops (SEQUENCE's is
// dropped), with recovery and retries as configured.
func (c *Client) Compound(ctx context.Context, ops ...nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	return c.do(ctx, func() []nfsv4.NfsArgop4 { return ops })
}

// do runs the operations build returns, rebuilding them after a recovery (new stateids).
func (c *Client) do(ctx context.Context, build func() []nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		s, closed := c.sess, c.closed && c.conn == nil
		c.mu.Unlock()
		var res []nfsv4.NfsResop4
		var err error
		switch {
		case closed:
			return nil, ErrClosed
		case s == nil:
			err = errNoSession
		default:
			res, err = c.onSlot(ctx, s, build())
			if err == nil {
				return res, nil
			}
		}
		if !c.cfg.Recover || ctx.Err() != nil {
			return nil, err
		}
		gen := 0
		if s != nil {
			gen = s.gen
		}
		switch st := StatusOf(err); {
		case st == ErrBadSession || st == ErrDeadSession || st == ErrConnNotBound:
			err = c.recoverState(ctx, gen, false, err)
		case st == ErrStaleClientID || st == ErrExpired:
			err = c.recoverState(ctx, gen, true, err)
		case st == ErrGrace || st == ErrDelay || errors.Is(err, ErrConnection):
			err = nil
		default:
			return nil, err
		}
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil, fmt.Errorf("giving up: %w", err)
		}
	}
}

func backoff(attempt int) time.Duration {
	return min(50*time.Millisecond<<min(attempt, 5), time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onSlot sends SEQUENCE+ops on a free slot of s. A call whose outcome is unknown (the
// connection failed) is resent on the same slot and sequence id over a new connection, so the
// server runs it at most once (it answers a resend from its reply cache); if the caller gives
// up first, the slot is never used again in this session.
func (c *Client) onSlot(ctx context.Context, s *session, ops []nfsv4.NfsArgop4) ([]nfsv4.NfsResop4, error) {
	var slot uint32
	select {
	case slot = <-s.slots:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a session slot: %w", ctx.Err())
	}
	args := append([]nfsv4.NfsArgop4{&nfsv4.NfsArgop4_OP_SEQUENCE{Opsequence: nfsv4.Sequence4args{
		SaSessionid:     s.id,
		SaSequenceid:    s.seq[slot],
		SaSlotid:        slot,
		SaHighestSlotid: uint32(cap(s.slots) - 1),
		SaCachethis:     !idempotent(ops),
	}}}, ops...)
	for attempt := 0; ; attempt++ {
		conn, err := c.connection(ctx)
		var res *nfsv4.Compound4res
		if err == nil {
			res, err = conn.call(ctx, c.cfg.CallTimeout, &nfsv4.Compound4args{Minorversion: c.cfg.MinorVersion, Argarray: args})
		}
		if errors.Is(err, ErrConnection) {
			if !c.cfg.Recover || ctx.Err() != nil {
				return nil, err // the slot stays taken: its sequence is unknown
			}
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return nil, fmt.Errorf("%w: giving up: %w", ErrConnection, err)
			}
			continue
		}
		if err != nil {
			s.slots <- slot
			return nil, err
		}
		results, err := checkResults(res, args)
		var opErr *OpError
		if errors.As(err, &opErr) && opErr.Index == 0 {
			// SEQUENCE itself failed: the slot did not advance.
			if opErr.Status == ErrBadSession || opErr.Status == ErrDeadSession {
				c.forgetSession(s)
			}
			s.slots <- slot
			return nil, err
		}
		if errors.Is(err, ErrBadReply) && (res == nil || len(res.Resarray) == 0) {
			return nil, err // the slot's sequence is unknown
		}
		s.seq[slot]++
		s.slots <- slot
		if err != nil {
			return nil, err
		}
		return results[1:], nil
	}
}

// forgetSession marks s gone, so no one else sends on it.
func (c *Client) forgetSession(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
}

// idempotent says whether ops can be run twice harmlessly, so their reply need not be cached
// (a cached READ reply would have to fit the session's reply cache).
func idempotent(ops []nfsv4.NfsArgop4) bool {
	for _, op := range ops {
		switch op.GetArgop() {
		case nfsv4.OP_PUTFH, nfsv4.OP_PUTROOTFH, nfsv4.OP_LOOKUP, nfsv4.OP_GETATTR, nfsv4.OP_GETFH,
			nfsv4.OP_READ, nfsv4.OP_READDIR, nfsv4.OP_SECINFO_NO_NAME, nfsv4.OP_ACCESS:
		default:
			return false
		}
	}
	return true
}

// Recover runs a recovery by hand (for clients without Config.Recover): a new session on the
// client ID, or when the server forgot it, a new client ID, reclaims and RECLAIM_COMPLETE.
func (c *Client) Recover(ctx context.Context) (Recovery, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	if err := c.recoverState(ctx, gen, false, errors.New("requested")); err != nil {
		return Recovery{}, err
	}
	rs := c.Recoveries()
	if len(rs) == 0 {
		return Recovery{}, errors.New("no recovery ran")
	}
	return rs[len(rs)-1], nil
}

// recoverState recovers the session of generation gen, unless someone already did.
func (c *Client) recoverState(ctx context.Context, gen int, newClient bool, trigger error) error {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.mu.Lock()
	if c.gen != gen && c.sess != nil {
		c.mu.Unlock()
		return nil
	}
	c.sess = nil
	c.mu.Unlock()
	rec := Recovery{Trigger: trigger}
	c.cfg.Logf("nfs4 %s: recovering after %v", c.cfg.Owner, trigger)
	if !newClient {
		err := c.createSession(ctx)
		switch st := StatusOf(err); {
		case err == nil:
		case st == ErrStaleClientID || st == ErrExpired:
			rec.CreateSession, newClient = st, true
		default:
			return fmt.Errorf("recovery: %w", err)
		}
	}
	if newClient {
		rec.NewClientID = true
		if err := c.establish(ctx); err != nil {
			return fmt.Errorf("recovery: %w", err)
		}
		c.mu.Lock()
		opens := make([]*Open, 0, len(c.opens))
		for o := range c.opens {
			opens = append(opens, o)
		}
		c.mu.Unlock()
		for _, o := range opens {
			err := o.reclaim(ctx)
			switch {
			case err == nil:
				rec.Reclaimed++
			case errors.Is(err, ErrConnection) || errors.Is(err, ErrBadSession) || ctx.Err() != nil:
				return fmt.Errorf("recovery: reclaiming: %w", err)
			default:
				rec.Lost++
				o.lose(err)
				c.cfg.Logf("nfs4 %s: reclaim refused: %v", c.cfg.Owner, err)
			}
		}
		if err := c.reclaimComplete(ctx); err != nil {
			return fmt.Errorf("recovery: %w", err)
		}
	}
	c.mu.Lock()
	c.recoveries = append(c.recoveries, rec)
	c.mu.Unlock()
	c.cfg.Logf("nfs4 %s: recovered: new client ID %v, %d reclaimed, %d lost", c.cfg.Owner, rec.NewClientID, rec.Reclaimed, rec.Lost)
	return nil
}

// keepLease renews the lease with a SEQUENCE three times per lease.
func (c *Client) keepLease() {
	defer close(c.stopped)
	t := time.NewTicker(max(c.lease/3, 500*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.lease)
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		_, err := c.Compound(ctx)
		cancel()
		c.mu.Lock()
		c.keeperErr = err
		c.mu.Unlock()
	}
}
