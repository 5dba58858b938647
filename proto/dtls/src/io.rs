//! The in-memory "socket" OpenSSL reads from and writes to: one datagram in,
//! a queue of datagrams out. OpenSSL's DTLS code issues exactly one BIO write per
//! record and one BIO read per datagram, so `Read`/`Write` calls map to records/datagrams.

use std::collections::VecDeque;
use std::io;

/// Incoming datagram slot plus outgoing datagram queue.
#[derive(Debug)]
pub(crate) struct DatagramIo {
    /// Reused across datagrams so steady-state input does not allocate.
    incoming: Vec<u8>,
    has_incoming: bool,
    outgoing: VecDeque<Vec<u8>>,
    /// Records are packed into one datagram while they fit (RFC 6347 §4.1.1 allows
    /// several records per datagram): a server flight then takes one or two datagrams
    /// instead of five.
    mtu: usize,
}

impl DatagramIo {
    pub(crate) fn new(mtu: usize) -> Self {
        Self { incoming: Vec::new(), has_incoming: false, outgoing: VecDeque::new(), mtu }
    }

    /// Makes `datagram` the next (and only) thing OpenSSL reads.
    pub(crate) fn set_incoming(&mut self, datagram: &[u8]) {
        self.incoming.clear();
        self.incoming.extend_from_slice(datagram);
        self.has_incoming = true;
    }

    /// Drops an unread incoming datagram so it cannot be seen twice.
    pub(crate) fn clear_incoming(&mut self) {
        self.has_incoming = false;
    }

    pub(crate) fn pop_outgoing(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }
}

impl io::Read for DatagramIo {
    /// Datagram semantics: the whole datagram in one read (OpenSSL's DTLS read buffer
    /// is larger than any datagram we accept); a too-small buffer truncates, like recv(2).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.has_incoming {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.has_incoming = false;
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        Ok(n)
    }
}

impl io::Write for DatagramIo {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        match self.outgoing.back_mut() {
            Some(last) if last.len() + record.len() <= self.mtu => last.extend_from_slice(record),
            _ => {
                let mut d = Vec::with_capacity(self.mtu.max(record.len()));
                d.extend_from_slice(record);
                self.outgoing.push_back(d);
            }
        }
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn reads_one_datagram_once() {
        let mut io = DatagramIo::new(1200);
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        io.set_incoming(&[1, 2, 3]);
        assert_eq!(io.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(io.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        io.set_incoming(&[4]);
        io.clear_incoming();
        assert!(io.read(&mut buf).is_err());
    }

    #[test]
    fn packs_records_up_to_mtu() {
        let mut io = DatagramIo::new(10);
        io.write_all(&[1; 4]).unwrap();
        io.write_all(&[2; 6]).unwrap();
        io.write_all(&[3; 5]).unwrap();
        io.write_all(&[4; 12]).unwrap(); // oversize record still goes out, alone
        assert_eq!(io.pop_outgoing().unwrap(), [[1u8; 4].as_slice(), &[2; 6]].concat());
        assert_eq!(io.pop_outgoing().unwrap(), vec![3; 5]);
        assert_eq!(io.pop_outgoing().unwrap(), vec![4; 12]);
        assert!(io.pop_outgoing().is_none());
    }
}
