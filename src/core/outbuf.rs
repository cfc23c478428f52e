//! The buffers a backup read fills: initialised (`&mut [u8]`, from safe Rust) or not
//! (`&mut [MaybeUninit<u8>]`, the caller's memory behind `CertSrvBackupRead`, which is
//! usually fresh from `malloc` or `AllocHGlobal`).
//!
//! A reference to uninitialised bytes typed `&mut [u8]` is undefined behaviour in Rust,
//! even if nothing reads them. So the read path (API, session, file reader, padding
//! generator, remote client) is generic over the byte type [`OutByte`]: it only ever
//! writes the buffer, through [`OutByte::copy`] and [`OutByte::read_fd`], and the ABI
//! hands the caller's memory down as `&mut [MaybeUninit<u8>]` without initialising it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for std::mem::MaybeUninit<u8> {}
}

/// A byte of a buffer a read writes into: `u8` or `MaybeUninit<u8>`.
pub trait OutByte: Copy + sealed::Sealed + 'static {
    /// Copies `src` into `dst`, which has the same length.
    fn copy(dst: &mut [Self], src: &[u8]);
    /// Copies the array `src` into `dst`, which has the same length: one bulk copy of a
    /// length known at compile time (a byte-wise loop into uninitialised memory compiles to
    /// vector stores or to byte stores depending on how the crate is split into codegen
    /// units: once a tenth of the speed).
    fn copy_array<const N: usize>(dst: &mut [Self], src: [u8; N]);
    /// One `read(2)` of `fd` into `dst` (retried on `EINTR`): the bytes read, 0 at end of file.
    fn read_fd(fd: impl AsFd, dst: &mut [Self]) -> io::Result<usize>;
}

impl OutByte for u8 {
    fn copy(dst: &mut [u8], src: &[u8]) {
        dst.copy_from_slice(src);
    }
    #[inline(always)]
    fn copy_array<const N: usize>(dst: &mut [u8], src: [u8; N]) {
        dst.copy_from_slice(&src);
    }
    fn read_fd(fd: impl AsFd, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::io::read(&fd, &mut *dst) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }
}

impl OutByte for MaybeUninit<u8> {
    #[inline(always)]
    fn copy_array<const N: usize>(dst: &mut [MaybeUninit<u8>], src: [u8; N]) {
        dst.copy_from_slice(&src.map(MaybeUninit::new));
    }
    fn copy(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
        assert_eq!(dst.len(), src.len(), "copy between slices of one length");
        for (d, s) in dst.iter_mut().zip(src) {
            *d = MaybeUninit::new(*s);
        }
    }
    fn read_fd(fd: impl AsFd, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        loop {
            match rustix::io::read(&fd, &mut *dst) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map(|(init, _)| init.len()).map_err(io::Error::from),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_byte_types_copy_and_read() {
        let mut a = [0u8; 3];
        u8::copy(&mut a, b"abc");
        assert_eq!(&a, b"abc");
        let mut u = [MaybeUninit::<u8>::uninit(); 3];
        MaybeUninit::copy(&mut u, b"xyz");
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello").unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut u = [MaybeUninit::<u8>::uninit(); 8];
        assert_eq!(MaybeUninit::read_fd(&f, &mut u).unwrap(), 5);
        let mut b = [0u8; 8];
        assert_eq!(u8::read_fd(&f, &mut b).unwrap(), 0);
    }
}
