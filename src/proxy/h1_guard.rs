//! A strict HTTP/1 framing guard between a client connection and hyper.
//!
//! hyper's parser is lenient where a proxy must not be (httparse takes a bare LF as a line end;
//! a `Content-Length` next to `Transfer-Encoding` is dropped instead of refused) and answers its
//! own parse errors with an empty body. The guard wraps the connection's I/O and checks every
//! request head before hyper sees a byte of it:
//!
//! - heads are handed over only once complete and valid (an incomplete head waits here, under
//!   the header timeout); the request line, head size and header count limits apply as bytes
//!   arrive, so an oversized head is refused without waiting for its end;
//! - bodies are followed (`Content-Length`, or chunked with every size line, CRLF and trailer
//!   checked) to find the next pipelined head; chunked bodies are counted against the body limit;
//! - after a request that may switch protocols (`Upgrade`, `CONNECT`), later bytes wait for the
//!   response: a `101` (or a 2xx to `CONNECT`) turns the guard into a plain pipe.
//!
//! On a bad head, the valid bytes before it are handed over, then a small stand-in request that
//! asks to close the connection; its sequence number and the violation go to the connection's
//! [`Verdict`], and the handler answers it with the JSON error ([`crate::proxy::error`]), in
//! order after any pipelined responses. Nothing of the bad request reaches hyper, let alone an
//! upstream. A bad body (broken chunking, too large) surfaces to hyper as an I/O error carrying
//! the [`Violation`]: a body being read whole is then answered 400 or 413, a streamed one is
//! cut. Rejected connections are closed with a short lingering drain so that the client reads
//! the answer instead of a reset.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use memchr::memchr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::limits::{ClientLimits, ConnSlot, Violation};

/// The request the guard hands to hyper in place of a refused one: answered by the handler
/// from the [`Verdict`], it closes the connection.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: gatehouse.invalid\r\nconnection: close\r\n\r\n";

/// How long a refused connection is drained (read and discarded) before it is closed.
const LINGER: Duration = Duration::from_secs(2);

/// Longest chunk-size line extension accepted (hyper's own bound is per body).
const MAX_CHUNK_EXT: usize = 4096;

/// Which request of a connection the guard refused, and why (set at most once).
#[derive(Debug, Default)]
pub struct Verdict(OnceLock<(u64, Violation)>);

impl Verdict {
    /// The violation if request number `seq` (1-based) of the connection is the stand-in.
    #[inline]
    pub fn for_request(&self, seq: u64) -> Option<Violation> {
        match self.0.get() {
            Some(&(at, v)) if at == seq => Some(v),
            _ => None,
        }
    }
}

/// The connection's I/O, checked on the way in (see the module documentation).
pub struct H1Guard<I> {
    inner: I,
    verdict: Arc<Verdict>,
    scanner: Scanner,
    header_timeout: Duration,
    /// Bytes read and not yet handed to hyper: `stash[sent..checked]` are checked;
    /// `stash[checked..]` is the start of an incomplete head, or bytes held while the response
    /// to a possible upgrade is awaited.
    stash: Vec<u8>,
    sent: usize,
    checked: usize,
    /// `stash[checked..]` has not been given to the scanner yet.
    unscanned: bool,
    /// A violation found after bytes still to be handed over (`true`: in a head).
    pending: Option<(Violation, bool)>,
    mode: Mode,
    /// The header timeout of an incomplete head, then the lingering close.
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: bool,
    /// hyper's read, parked while the response to a possible upgrade is awaited.
    parked: Option<Waker>,
    shut: bool,
    _slot: Option<ConnSlot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Checking,
    /// Switched protocols: bytes pass untouched.
    Passthrough,
    /// A head was refused: hand over the stand-in (from this offset), then nothing.
    Refused(usize),
    /// A body was refused: every read fails.
    Failed(Violation),
}

impl<I> H1Guard<I> {
    /// Guard `inner`; `slot` (the connection's place under the connection limit) is held as
    /// long as the I/O lives, through an upgrade too.
    pub fn new(
        inner: I,
        limits: &ClientLimits,
        verdict: Arc<Verdict>,
        slot: Option<ConnSlot>,
    ) -> Self {
        H1Guard {
            inner,
            verdict,
            scanner: Scanner::new(limits),
            header_timeout: limits.header_timeout,
            stash: Vec::new(),
            sent: 0,
            checked: 0,
            unscanned: false,
            pending: None,
            mode: Mode::Checking,
            timer: None,
            timer_armed: false,
            parked: None,
            shut: false,
            _slot: slot,
        }
    }

    fn arm(&mut self, after: Duration) {
        let deadline = Instant::now() + after;
        match &mut self.timer {
            Some(t) => t.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.timer_armed = true;
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer_armed
            && self
                .timer
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }

    /// Hand `stash[sent..checked]` over, as much as fits.
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.checked - self.sent);
        buf.put_slice(&self.stash[self.sent..self.sent + n]);
        self.sent += n;
        if self.sent == self.checked {
            self.stash.drain(..self.checked);
            self.sent = 0;
            self.checked = 0;
        }
    }

    fn refuse(&mut self, v: Violation, in_head: bool) {
        tracing::debug!(violation = %v, "request refused by the framing guard");
        if in_head {
            // Nothing of the refused head, nor what follows it, is handed over.
            self.stash.truncate(self.checked);
            let _ = self.verdict.0.set((self.scanner.heads + 1, v));
            self.mode = Mode::Refused(0);
        } else {
            self.mode = Mode::Failed(v);
        }
        self.timer_armed = false;
    }

    /// The response to a possible upgrade starts with `head`: switch to a pipe, or go on.
    fn on_response(&mut self, head: &[u8]) {
        if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
            return;
        }
        let status = &head[9..12];
        if status[0] == b'1' && status != b"101" {
            return; // 100 Continue and other interim responses: the final one decides
        }
        if status == b"101" || (self.scanner.connect && status[0] == b'2') {
            self.mode = Mode::Passthrough;
            self.scanner.state = State::Passthrough;
            // Held bytes belong to the new protocol: hand them over as they are.
            self.checked = self.stash.len();
        } else {
            self.scanner.state = State::Head(Head::default());
            self.unscanned = self.checked < self.stash.len();
        }
        if let Some(w) = self.parked.take() {
            w.wake();
        }
    }
}

impl<I: AsyncRead + Unpin> H1Guard<I> {
    /// Read more into the stash; `Ok(0)` at end of stream.
    fn read_into_stash(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let len = self.stash.len();
        self.stash.resize(len + 4096, 0);
        let mut rb = ReadBuf::new(&mut self.stash[len..]);
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut rb);
        let n = rb.filled().len();
        self.stash.truncate(len + n);
        ready!(polled)?;
        Poll::Ready(Ok(n))
    }

    /// Feed `stash[checked..]` to the scanner.
    fn scan_stash(&mut self) {
        self.unscanned = false;
        let fed = self.scanner.feed(&self.stash[self.checked..]);
        match fed {
            Fed::All => {
                self.checked = self.stash.len();
                self.timer_armed = false;
            }
            Fed::Partial(n) => {
                // A new head started in these bytes, or the same one goes on.
                if n > 0 || !self.timer_armed {
                    self.arm(self.header_timeout);
                }
                self.checked += n;
            }
            Fed::Hold(n) => {
                self.checked += n;
                self.timer_armed = false;
            }
            Fed::BadHead(n, v) => {
                self.checked += n;
                self.pending = Some((v, true));
            }
            Fed::BadBody(n, v) => {
                self.checked += n;
                self.pending = Some((v, false));
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for H1Guard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.mode {
                Mode::Checking => {}
                Mode::Passthrough => {
                    if this.sent < this.checked {
                        this.hand_over(buf);
                        return Poll::Ready(Ok(()));
                    }
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                Mode::Refused(pos) => {
                    if this.sent < this.checked {
                        this.hand_over(buf);
                        return Poll::Ready(Ok(()));
                    }
                    if pos < STAND_IN.len() {
                        let n = buf.remaining().min(STAND_IN.len() - pos);
                        buf.put_slice(&STAND_IN[pos..pos + n]);
                        this.mode = Mode::Refused(pos + n);
                        return Poll::Ready(Ok(()));
                    }
                    // Not end of stream: hyper would drop the answer in flight. The stand-in
                    // asked to close, so hyper ends the connection once it has answered.
                    return Poll::Pending;
                }
                Mode::Failed(v) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v)));
                }
            }
            if this.sent < this.checked {
                this.hand_over(buf);
                return Poll::Ready(Ok(()));
            }
            if let Some((v, in_head)) = this.pending.take() {
                this.refuse(v, in_head);
                continue;
            }
            if matches!(this.scanner.state, State::AwaitResponse) {
                this.parked = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if this.checked < this.stash.len() {
                // An incomplete head (or held bytes) waits in the stash.
                if !this.unscanned {
                    match this.read_into_stash(cx) {
                        Poll::Pending => {
                            if this.expired(cx) {
                                this.refuse(Violation::HeaderTimeout, true);
                                continue;
                            }
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        // The client went away mid-head: end of stream for hyper.
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Ok(_)) => {}
                    }
                }
                this.scan_stash();
                continue;
            }
            // Nothing held: read straight into hyper's buffer and check in place.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                return Poll::Ready(Ok(()));
            }
            let fed = this.scanner.feed(&buf.filled()[before..after]);
            let keep = match fed {
                Fed::All => return Poll::Ready(Ok(())),
                Fed::Partial(n) => {
                    this.arm(this.header_timeout);
                    this.stash
                        .extend_from_slice(&buf.filled()[before + n..after]);
                    n
                }
                Fed::Hold(n) => {
                    this.stash
                        .extend_from_slice(&buf.filled()[before + n..after]);
                    n
                }
                Fed::BadHead(n, v) => {
                    this.pending = Some((v, true));
                    n
                }
                Fed::BadBody(n, v) => {
                    this.pending = Some((v, false));
                    n
                }
            };
            buf.set_filled(before + keep);
            if keep > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H1Guard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if matches!(this.scanner.state, State::AwaitResponse) {
            this.on_response(buf);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if matches!(this.scanner.state, State::AwaitResponse)
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.on_response(first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.mode, Mode::Refused(_) | Mode::Failed(_)) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        // Lingering close (nginx's `lingering_close`): after our FIN, read and drop what the
        // client still sends for a while, so that closing with unread bytes does not reset the
        // connection before the client has read the answer.
        if !this.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
            this.arm(LINGER);
        }
        loop {
            this.stash.clear();
            match this.read_into_stash(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    if this.expired(cx) {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// What the scanner made of a run of bytes.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    /// All of it is valid.
    All,
    /// The first `n` bytes are valid; the rest starts a head still incomplete (to be fed again,
    /// from that start, with more bytes).
    Partial(usize),
    /// The first `n` bytes are valid; the rest waits for the response to a possible upgrade.
    Hold(usize),
    /// The first `n` bytes are valid; the head after them is not.
    BadHead(usize, Violation),
    /// The first `n` bytes are valid; the body goes wrong after them.
    BadBody(usize, Violation),
}

/// Where a connection's byte stream is.
#[derive(Debug)]
enum State {
    Head(Head),
    /// This many body bytes to go.
    Length(u64),
    Chunked(Chunked),
    /// The request just read may switch protocols.
    AwaitResponse,
    Passthrough,
}

/// The stream's framing, checked as it goes.
struct Scanner {
    state: State,
    /// Request heads found valid so far.
    heads: u64,
    /// The last request was a `CONNECT` (a 2xx answer makes a tunnel).
    connect: bool,
    /// The current request may switch protocols once its body is through.
    upgrade_after: bool,
    max_request_line: usize,
    max_head_size: usize,
    max_headers: usize,
    max_body_size: u64,
}

impl Scanner {
    fn new(limits: &ClientLimits) -> Self {
        Scanner {
            state: State::Head(Head::default()),
            heads: 0,
            connect: false,
            upgrade_after: false,
            max_request_line: limits.max_request_line,
            max_head_size: limits.max_head_size,
            max_headers: limits.max_headers,
            max_body_size: limits.max_body_size,
        }
    }

    fn end_message(&mut self) {
        self.state = if self.upgrade_after {
            State::AwaitResponse
        } else {
            State::Head(Head::default())
        };
    }

    fn feed(&mut self, data: &[u8]) -> Fed {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Passthrough => return Fed::All,
                State::AwaitResponse => {
                    return if pos == data.len() {
                        Fed::All
                    } else {
                        Fed::Hold(pos)
                    };
                }
                State::Length(left) => {
                    let take = (*left).min((data.len() - pos) as u64);
                    pos += take as usize;
                    *left -= take;
                    if *left == 0 {
                        self.end_message();
                    } else {
                        return Fed::All;
                    }
                }
                State::Chunked(c) => {
                    match c.feed(&data[pos..], self.max_body_size, self.max_head_size) {
                        Ok((used, true)) => {
                            pos += used;
                            self.end_message();
                        }
                        Ok(_) => return Fed::All,
                        Err((used, v)) => return Fed::BadBody(pos + used, v),
                    }
                }
                State::Head(h) => {
                    if pos == data.len() {
                        return if h.scanned == 0 {
                            Fed::All
                        } else {
                            Fed::Partial(pos)
                        };
                    }
                    let limits = (self.max_request_line, self.max_head_size, self.max_headers);
                    match h.feed(&data[pos..], limits) {
                        Err(v) => return Fed::BadHead(pos, v),
                        Ok(None) => return Fed::Partial(pos),
                        Ok(Some(len)) => {
                            let h = std::mem::take(h);
                            match h.framing(self.max_body_size) {
                                Err(v) => return Fed::BadHead(pos, v),
                                Ok(body) => {
                                    pos += len;
                                    self.heads += 1;
                                    self.connect = h.connect;
                                    self.upgrade_after = h.connect || (h.upgrade && !h.http10);
                                    match body {
                                        Body::None => self.end_message(),
                                        Body::Length(n) => self.state = State::Length(n),
                                        Body::Chunked => {
                                            self.state = State::Chunked(Chunked::default())
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("state", &self.state)
            .field("heads", &self.heads)
            .finish()
    }
}

/// A request head being checked, line by line as lines complete.
#[derive(Debug, Default)]
struct Head {
    /// Bytes of the head already checked (complete lines), from its start.
    scanned: usize,
    /// Lines seen, the request line included.
    lines: usize,
    content_length: Option<u64>,
    transfer_encoding: Option<bool>,
    upgrade: bool,
    connect: bool,
    http10: bool,
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

impl Head {
    /// Check the complete lines of `data` (which starts at the head's start). `Ok(Some(len))`
    /// once the head ends, `Ok(None)` while it is incomplete.
    fn feed(
        &mut self,
        data: &[u8],
        (max_line, max_head, max_headers): (usize, usize, usize),
    ) -> Result<Option<usize>, Violation> {
        let mut pos = self.scanned;
        loop {
            let Some(i) = memchr(b'\n', &data[pos..]) else {
                if self.lines == 0 && data.len() - pos > max_line {
                    return Err(Violation::UriTooLong);
                }
                if data.len() > max_head {
                    return Err(Violation::HeadTooLarge);
                }
                self.scanned = pos;
                return Ok(None);
            };
            let lf = pos + i;
            if lf == pos || data[lf - 1] != b'\r' {
                return Err(Violation::Malformed("bare LF line ending"));
            }
            let line = &data[pos..lf - 1];
            if self.lines == 0 && line.len() > max_line {
                return Err(Violation::UriTooLong);
            }
            if lf + 1 > max_head {
                return Err(Violation::HeadTooLarge);
            }
            pos = lf + 1;
            if self.lines == 0 {
                if line.is_empty() {
                    continue; // blank lines before the request line are ignored (RFC 9112 §2.2)
                }
                self.request_line(line)?;
            } else if line.is_empty() {
                return Ok(Some(pos));
            } else {
                if self.lines > max_headers {
                    return Err(Violation::TooManyHeaders);
                }
                self.header_line(line)?;
            }
            self.lines += 1;
        }
    }

    fn request_line(&mut self, line: &[u8]) -> Result<(), Violation> {
        const BAD: Violation = Violation::Malformed("invalid request line");
        // Lines are short: one pass per part, checking bytes as the separator is looked for.
        let sp = line.iter().position(|&b| !is_tchar(b)).ok_or(BAD)?;
        if sp == 0 || line[sp] != b' ' {
            return Err(Violation::Malformed("invalid method"));
        }
        let method = &line[..sp];
        let rest = &line[sp + 1..];
        let end = rest.iter().position(|&b| !is_target_byte(b)).ok_or(BAD)?;
        if end == 0 || rest[end] != b' ' {
            return Err(Violation::Malformed("invalid request target"));
        }
        match &rest[end + 1..] {
            b"HTTP/1.1" => {}
            b"HTTP/1.0" => self.http10 = true,
            [b'H', b'T', b'T', b'P', b'/', a, b'.', b]
                if a.is_ascii_digit() && b.is_ascii_digit() =>
            {
                return Err(Violation::VersionNotSupported);
            }
            _ => return Err(Violation::Malformed("invalid HTTP version")),
        }
        self.connect = method == b"CONNECT";
        Ok(())
    }

    fn header_line(&mut self, line: &[u8]) -> Result<(), Violation> {
        if matches!(line[0], b' ' | b'\t') {
            return Err(Violation::Malformed("obsolete line folding"));
        }
        // The name is checked while the colon is looked for.
        let colon = line
            .iter()
            .position(|&b| !is_tchar(b))
            .ok_or(Violation::Malformed("header line without a colon"))?;
        if line[colon] != b':' {
            let rest = &line[colon..];
            return Err(Violation::Malformed(
                if rest.iter().all(|&b| b == b' ' || b == b'\t' || is_tchar(b)) {
                    "header line without a colon"
                } else if trim(rest).first() == Some(&b':') {
                    "whitespace before a header colon"
                } else {
                    "invalid header name"
                },
            ));
        }
        let name = &line[..colon];
        if name.is_empty() {
            return Err(Violation::Malformed("empty header name"));
        }
        let value = &line[colon + 1..];
        if !valid_value(value) {
            return Err(Violation::Malformed("invalid header value"));
        }
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if self.content_length.is_some() {
                    return Err(Violation::Malformed("duplicate Content-Length"));
                }
                self.content_length = Some(
                    parse_length(trim(value))
                        .ok_or(Violation::Malformed("invalid Content-Length"))?,
                );
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if self.transfer_encoding.is_some() {
                    return Err(Violation::Malformed("duplicate Transfer-Encoding"));
                }
                self.transfer_encoding = Some(trim(value).eq_ignore_ascii_case(b"chunked"));
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => self.upgrade = true,
            _ => {}
        }
        Ok(())
    }

    /// How the body of a complete, valid head is framed.
    fn framing(&self, max_body: u64) -> Result<Body, Violation> {
        match (self.transfer_encoding, self.content_length) {
            (Some(_), Some(_)) => Err(Violation::Malformed(
                "both Content-Length and Transfer-Encoding",
            )),
            (Some(_), None) if self.http10 => Err(Violation::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
            (Some(false), None) => Err(Violation::TransferCodingNotSupported),
            (Some(true), None) => Ok(Body::Chunked),
            (None, Some(n)) if n > max_body => Err(Violation::BodyTooLarge),
            (None, Some(0)) | (None, None) => Ok(Body::None),
            (None, Some(n)) => Ok(Body::Length(n)),
        }
    }
}

/// A chunked body being followed.
#[derive(Debug, Default)]
struct Chunked {
    phase: Phase,
    size: u64,
    digits: u8,
    /// Bytes of the current extension or trailer section.
    extra: usize,
    total: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf {
        last: bool,
    },
}

impl Chunked {
    /// `Ok((used, true))` when the body ended after `used` bytes; `Ok((len, false))` when it
    /// goes on; `Err((at, why))` when it goes wrong at `at`.
    fn feed(
        &mut self,
        data: &[u8],
        max_body: u64,
        max_trailers: usize,
    ) -> Result<(usize, bool), (usize, Violation)> {
        const BARE_LF: Violation = Violation::Malformed("bare LF in a chunked body");
        let mut i = 0;
        while i < data.len() {
            if self.phase == Phase::Data {
                let take = self.size.min((data.len() - i) as u64);
                i += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.phase = Phase::DataCr;
                }
                continue;
            }
            let b = data[i];
            let bad = |why| Err((i, Violation::Malformed(why)));
            match self.phase {
                Phase::Size => {
                    if let Some(d) = hex(b) {
                        if self.digits == 16 {
                            return bad("chunk size too large");
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.digits += 1;
                    } else if self.digits == 0 {
                        return bad("invalid chunk size");
                    } else {
                        match b {
                            b'\r' => self.phase = Phase::SizeLf,
                            b';' | b' ' | b'\t' => {
                                self.phase = Phase::Ext;
                                self.extra = 0;
                            }
                            b'\n' => return Err((i, BARE_LF)),
                            _ => return bad("invalid chunk size"),
                        }
                    }
                }
                Phase::Ext => match b {
                    b'\r' => self.phase = Phase::SizeLf,
                    b'\n' => return Err((i, BARE_LF)),
                    _ if b != b'\t' && (b < 0x20 || b == 0x7f) => {
                        return bad("invalid chunk extension");
                    }
                    _ => {
                        self.extra += 1;
                        if self.extra > MAX_CHUNK_EXT {
                            return bad("chunk extension too long");
                        }
                    }
                },
                Phase::SizeLf => {
                    if b != b'\n' {
                        return bad("invalid chunk size line ending");
                    }
                    self.total = self.total.saturating_add(self.size);
                    if self.total > max_body {
                        return Err((i, Violation::BodyTooLarge));
                    }
                    self.digits = 0;
                    if self.size == 0 {
                        self.phase = Phase::TrailerStart;
                        self.extra = 0;
                    } else {
                        self.phase = Phase::Data;
                    }
                }
                Phase::DataCr => {
                    if b != b'\r' {
                        return bad("chunk data longer than its size");
                    }
                    self.phase = Phase::DataLf;
                }
                Phase::DataLf => {
                    if b != b'\n' {
                        return bad("invalid line ending after chunk data");
                    }
                    self.phase = Phase::Size;
                }
                Phase::TrailerStart | Phase::Trailer => {
                    let start = self.phase == Phase::TrailerStart;
                    match b {
                        b'\r' => self.phase = Phase::TrailerLf { last: start },
                        b'\n' => return Err((i, BARE_LF)),
                        _ if b != b'\t' && (b < 0x20 || b == 0x7f) => {
                            return bad("invalid trailer field");
                        }
                        b' ' | b'\t' if start => return bad("obsolete line folding"),
                        _ => self.phase = Phase::Trailer,
                    }
                    self.extra += 1;
                    if self.extra > max_trailers {
                        return Err((i, Violation::HeadTooLarge));
                    }
                }
                Phase::TrailerLf { last } => {
                    if b != b'\n' {
                        return bad("CR without LF in trailers");
                    }
                    if last {
                        return Ok((i + 1, true));
                    }
                    self.phase = Phase::TrailerStart;
                }
                Phase::Data => {}
            }
            i += 1;
        }
        Ok((i, false))
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// `1*DIGIT`, nothing else (no sign, no list), within `u64`.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Byte classes, one lookup per byte on the hot path.
const TCHAR: u8 = 1;
const TARGET: u8 = 2;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        // RFC 9110 `tchar`.
        if matches!(c,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
            | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
        {
            t[b] |= TCHAR;
        }
        // Visible ASCII but the bytes `http::Uri` refuses (so that hyper never answers a target
        // on its own): no controls, no spaces, no non-ASCII.
        if matches!(c, 0x21..=0x7e) && !matches!(c, b'"' | b'<' | b'>' | b'`') {
            t[b] |= TARGET;
        }
        b += 1;
    }
    t
};

#[inline]
fn is_tchar(b: u8) -> bool {
    CLASSES[b as usize] & TCHAR != 0
}

#[inline]
fn is_target_byte(b: u8) -> bool {
    CLASSES[b as usize] & TARGET != 0
}

/// A field value holds HTAB, SP, visible ASCII and obs-text; no other control byte.
#[inline]
fn valid_value(v: &[u8]) -> bool {
    #[inline]
    fn byte_ok(b: u8) -> bool {
        b == b'\t' || (b >= 0x20 && b != 0x7f)
    }
    // Eight bytes at a time: a word with no byte below 0x20 and none equal to 0x7f is fine;
    // otherwise its bytes are looked at one by one (a tab is allowed).
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        let below = x.wrapping_sub(LO * 0x20) & !x & HI;
        let y = x ^ (LO * 0x7f);
        let del = y.wrapping_sub(LO) & !y & HI;
        if below | del != 0 && !w.iter().all(|&b| byte_ok(b)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| byte_ok(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new(&ClientLimits {
            max_request_line: 64,
            max_head_size: 256,
            max_headers: 4,
            max_body_size: 100,
            ..ClientLimits::default()
        })
    }

    fn one(bytes: &[u8]) -> Fed {
        scanner().feed(bytes)
    }

    fn bad(bytes: &[u8]) -> Violation {
        match one(bytes) {
            Fed::BadHead(_, v) | Fed::BadBody(_, v) => v,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn valid_requests_pass_whole() {
        assert_eq!(one(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Fed::All);
        assert_eq!(
            one(b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n"),
            Fed::All
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
            Fed::All
        );
        assert_eq!(one(b"\r\nGET / HTTP/1.1\r\nx:\r\n\r\n"), Fed::All);
    }

    #[test]
    fn heads_split_anywhere_are_resumed() {
        let msg = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        for cut in 0..msg.len() {
            let mut s = scanner();
            let (a, b) = msg.split_at(cut);
            let rest = match s.feed(a) {
                Fed::All => b.to_vec(),
                Fed::Partial(n) => [&a[n..], b].concat(),
                other => panic!("{other:?} at {cut}"),
            };
            assert_eq!(s.feed(&rest), Fed::All, "cut at {cut}");
            assert_eq!(s.heads, 2);
        }
    }

    #[test]
    fn malformed_framing_is_refused() {
        for (bytes, why) in [
            (&b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..], "bare LF"),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace before"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "folding"),
            (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", "header value"),
            (b"GET / HTTP/1.1\r\nX\x01: a\r\n\r\n", "header name"),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "header value"),
            (b"GET  / HTTP/1.1\r\n\r\n", "target"),
            (b"GET /a b HTTP/1.1\r\n\r\n", "version"),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                "duplicate",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
                "chunk size",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n",
                "chunk size",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
                "bare LF",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
                "longer",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
                "too large",
            ),
        ] {
            match bad(bytes) {
                Violation::Malformed(m) => assert!(m.contains(why), "{m} for {why}"),
                other => panic!("{other:?} for {why}"),
            }
        }
    }

    #[test]
    fn limits_have_their_own_answers() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(80));
        assert_eq!(bad(long.as_bytes()), Violation::UriTooLong);
        // Refused before the line ends.
        assert_eq!(bad(&long.as_bytes()[..70]), Violation::UriTooLong);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(300));
        assert_eq!(bad(big.as_bytes()), Violation::HeadTooLarge);
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n"),
            Violation::TooManyHeaders
        );
        assert_eq!(
            one(b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\n\r\n"),
            Fed::All
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"),
            Violation::BodyTooLarge
        );
        // Exactly the limit is fine; one byte more is not.
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"),
            Fed::All
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"),
            Violation::BodyTooLarge
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Violation::TransferCodingNotSupported
        );
        assert_eq!(
            bad(b"GET / HTTP/2.0\r\n\r\n"),
            Violation::VersionNotSupported
        );
    }

    #[test]
    fn the_valid_prefix_before_a_bad_request_is_kept() {
        let msg = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX : y\r\n\r\n";
        assert!(matches!(one(msg), Fed::BadHead(18, _)));
    }

    #[test]
    fn upgrades_hold_what_follows() {
        let mut s = scanner();
        let msg = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x00garbage\n";
        assert_eq!(s.feed(msg), Fed::Hold(38));
        assert!(matches!(s.state, State::AwaitResponse));
    }

    #[test]
    fn target_bytes_agree_with_http_uri() {
        // Exactly what hyper accepts in a path and in a query: the guard answers the rest.
        for b in 0u8..=255 {
            let target = [b'/', b'a', b, b'b'];
            let q = [b'/', b'?', b'a', b, b'b'];
            let ok =
                http::Uri::try_from(&target[..]).is_ok() && http::Uri::try_from(&q[..]).is_ok();
            assert_eq!(ok, is_target_byte(b), "byte {b:#x}");
        }
    }

    #[test]
    fn field_values_are_checked_word_by_word() {
        assert!(valid_value(
            b" text\twith tab and \x80\xff obs-text, long enough "
        ));
        for bad in [0u8, 1, 0x0a, 0x0d, 0x1f, 0x7f] {
            for at in 0..20 {
                let mut v = vec![b'a'; 20];
                v[at] = bad;
                assert!(!valid_value(&v), "byte {bad:#x} at {at}");
            }
        }
    }
}
